-- Runs that changed nothing were recorded as rejected ("no changes") and counted against the
-- acceptance rate. They get their own outcome, `unchanged`, which no rate counts as decided.
UPDATE episodes SET outcome = 'unchanged', outcome_reason = 'the agent changed nothing'
 WHERE source = 'do' AND outcome = 'rejected' AND outcome_reason = 'no changes'
   AND (final_diff IS NULL OR final_diff = '');

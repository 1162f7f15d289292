-- Which engine and adapter answered each model call (issue 12): a `litellm` call through
-- `learnagent serve` may switch adapters between two steps of one episode (promotion, rollback),
-- so the episode's own adapter_version is not enough. `stop_reason`: why the reply ended
-- (reply_complete, eos, max_tokens, stop_sequence, ...). NULL for calls recorded before.
-- Numbered 0006: 0005 is taken by a branch in flight (daily-core's unchanged outcome).
ALTER TABLE model_calls ADD COLUMN engine TEXT;
ALTER TABLE model_calls ADD COLUMN adapter_version TEXT;
ALTER TABLE model_calls ADD COLUMN stop_reason TEXT;

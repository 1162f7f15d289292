"""BM25 retrieval over identifiers: terms, ranking, exclusion, and fitting the context to a budget."""

import math

import pytest

from learnagent.learning.retrieval import BM25Index, fit_context, path_terms, terms


def test_terms_split_identifiers_into_sub_words():
    assert terms("def get_logger(name): return parseHTTPResponse(x)") == [
        "get_logger", "get", "logger", "name", "parsehttpresponse", "parse", "http", "response"]
    assert terms("for i in range(10): pass") == ["range"]  # keywords and one-letter names carry nothing
    assert path_terms("shop/money_utils.py") == ["shop", "money_utils", "money", "utils", "py"]


FILES = {
    "shop/money.py": "def to_cents(amount):\n    return int(round(amount * 100))\n",
    "shop/log.py": "import logging\nlogger = logging.getLogger('shop')\ndef log_call(fn):\n    return fn\n",
    "shop/orders.py": "from shop.log import log_call\n@log_call\ndef create_order(order_id, amount_cents): ...\n",
    "docs/readme_tool.py": "print('unrelated tooling')\n",
}


def test_bm25_against_hand_computed_scores():
    index = BM25Index(FILES)
    # "cents" occurs in money.py (via to_cents) and orders.py (amount_cents): df 2 of 4 files
    idf = math.log(1 + (4 - 2 + 0.5) / (2 + 0.5))
    assert index.idf["cents"] == pytest.approx(idf)
    length = index.length["shop/money.py"]
    norm = 1.2 * (1 - 0.75 + 0.75 * length / index.avg_length)
    assert index.scores("cents")["shop/money.py"] == pytest.approx(idf * 1 * 2.2 / (1 + norm))
    assert index.scores("cents")["shop/log.py"] == 0.0


def test_search_ranks_by_shared_identifiers_and_import_paths():
    index = BM25Index(FILES)
    # an import names the module's path: import proximity falls out of the same score
    assert index.search("from shop.money import to_cents", 2)[0].path == "shop/money.py"
    hits = index.search("@log_call\ndef refund(order_id):", 3, path="shop/refunds.py")
    assert [h.path for h in hits][:2] == ["shop/orders.py", "shop/log.py"]  # orders also shares order_id
    assert all(h.score > 0 for h in hits) and "docs/readme_tool.py" not in [h.path for h in hits]
    # never the file being written, never an excluded file
    assert "shop/log.py" not in [h.path for h in index.search("log_call", 4, path="shop/log.py")]
    assert [h.path for h in index.search("log_call", 4, exclude={"shop/log.py"})] == ["shop/orders.py"]
    assert BM25Index({}).search("anything", 3) == []


def test_fit_context_keeps_the_budget_and_puts_the_best_file_last():
    files = [("best.py", "b = 1\n" * 10), ("second.py", "s = 2\n" * 10), ("third.py", "t = 3\n" * 400)]
    text, paths = fit_context("AGENTS.md:\nUse cents.", files, 400)
    assert len(text) <= 400
    assert text.startswith("AGENTS.md:\nUse cents.")
    assert paths == ["best.py", "second.py", "third.py"]  # the third is cut at a line to fit
    assert text.index("# second.py") < text.index("# best.py")  # most similar nearest the prompt
    assert text.index("# third.py") < text.index("# second.py")
    third = text[text.index("# third.py"):text.index("# second.py")].strip()
    assert third.endswith("t = 3") and third.count("t = 3") < 400  # cut at a line end
    # a budget too small for another file stops there; conventions take at most their share
    text, paths = fit_context("x" * 1000, files, 170)
    assert paths == ["best.py"] and len(text) <= 170 and text.startswith("x" * 42 + "\n\n# best.py")

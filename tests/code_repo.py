"""A small git repository whose modules follow house conventions, built commit by commit.

Every module imports the logging helper and decorates each public function with `@log_call`;
money is passed as integer `*_cents`; errors are the project's `ShopError` family. Modules are
added one commit each (so `history import` turns them into episodes), with fixed dates so the
episode ids, and so the held-out split, are the same on every run.
"""

from __future__ import annotations

from pathlib import Path

from conftest import git

CONVENTIONS = ("# Conventions\n- Import `log_call` from shop.log and decorate every public function with it.\n"
               "- Money is an int number of cents, parameters named *_cents.\n"
               "- Raise ShopError subclasses from shop.errors, never bare exceptions.\n")

LOG = '''import functools
import logging

logger = logging.getLogger("shop")


def log_call(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        logger.info("call %s", fn.__name__)
        return fn(*args, **kwargs)
    return wrapper
'''

ERRORS = '''class ShopError(Exception):
    """Base of every error the shop raises."""


class NotFound(ShopError):
    pass


class Invalid(ShopError):
    pass
'''

NOUNS = ["order", "invoice", "refund", "coupon", "basket", "payment", "shipment", "voucher", "receipt",
         "subscription", "discount", "parcel"]


def module(noun: str) -> str:
    """One module in the house style: three public functions with the conventions."""
    cls = noun.capitalize()
    return f'''from shop.errors import Invalid, NotFound
from shop.log import log_call

_{noun}s = {{}}


@log_call
def create_{noun}({noun}_id, amount_cents):
    if amount_cents < 0:
        raise Invalid("negative amount for {noun} %s" % {noun}_id)
    _{noun}s[{noun}_id] = {{"id": {noun}_id, "amount_cents": amount_cents}}
    return _{noun}s[{noun}_id]


@log_call
def get_{noun}({noun}_id):
    if {noun}_id not in _{noun}s:
        raise NotFound("no {noun} %s" % {noun}_id)
    return _{noun}s[{noun}_id]


@log_call
def total_{noun}_cents():
    return sum(item["amount_cents"] for item in _{noun}s.values())


class {cls}Report:
    def __init__(self, title):
        self.title = title
'''


def make_code_repo(path: Path, nouns=NOUNS) -> Path:
    """The repository: conventions, helpers, then one module per commit (fixed dates)."""
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    (path / "AGENTS.md").write_text(CONVENTIONS)
    (path / "shop").mkdir()
    (path / "shop" / "__init__.py").write_text("")
    (path / "shop" / "log.py").write_text(LOG)
    (path / "shop" / "errors.py").write_text(ERRORS)
    _commit(path, "Add the logging helper and the error family", 0)
    for day, noun in enumerate(nouns, 1):
        (path / "shop" / f"{noun}s.py").write_text(module(noun))
        _commit(path, f"Add {noun}s", day)
    return path


def _commit(path: Path, message: str, day: int) -> None:
    date = f"2024-01-{day + 1:02d}T12:00:00+00:00"
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", message, env={"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date})

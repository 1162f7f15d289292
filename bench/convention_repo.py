"""A small repository with four house conventions, for the learning tests and benchmarks.

`tally` is a billing package. Every module of it follows the same four conventions
(CONVENTIONS.md), chosen so that a 135M model can show each within a few lines:

1. logging through the project's helper: `from tally.log import get_logger` and
   `log = get_logger(__name__)` at module level (not `print`, not `logging`);
2. a project exception family: each module defines `class XError(TallyError)` and raises it;
3. money as integer cents: parameters named `*_cents`, typed `int`;
4. `@audited` (from `tally.audit`) on every public function.

Thirty modules are written from the specs below. TRAIN_MODULES go into the repository, one
commit each, with fixed dates (the same commit ids, so the same id-hashed held-out split, on
every run). HELDOUT_MODULES never enter the repository: the raw-text probes (`probes()`) start
them, and the behavioural measure reads their lines; nothing trained on sees them.

    python bench/convention_repo.py DIR        # write the repository into DIR (a new folder)
    python bench/convention_repo.py --probes   # print the probes as JSON lines

Also here: `follows_conventions(source)`, the repository's own check of a module (used to
refuse teacher samples that break a convention), GENERAL_TEXT_PROMPTS (unrelated code, raw
text) and REPO_NAMES (the repository's names, which no unrelated completion should show).
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "tally"

CONVENTIONS = """# Conventions of tally

- Log through the project's helper: `from tally.log import get_logger`, then `log = get_logger(__name__)`
  at module level. Never `print`, never the `logging` module directly.
- Errors: every module defines its own exception class deriving from `TallyError`
  (`from tally.errors import TallyError`, e.g. `class RefundError(TallyError):`) and raises it.
  Never raise `ValueError` or `Exception`.
- Money is always an integer number of cents: parameters are named `*_cents` and typed `int`
  (e.g. `amount_cents: int`). Never floats for money.
- Every public function is decorated with `@audited` (`from tally.audit import audited`).
"""

HELPERS = {
    "tally/__init__.py": '"""tally: billing helpers."""\n',
    "tally/log.py": '''"""The one way tally logs: a named logger with the project's format."""

import logging

_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


def get_logger(name: str) -> logging.Logger:
    """A logger for module `name`, configured once for the whole package."""
    root = logging.getLogger("tally")
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(_FORMAT))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
    return logging.getLogger(name)
''',
    "tally/errors.py": '''"""The root of tally's exceptions: callers catch TallyError and nothing wider."""


class TallyError(Exception):
    """Something tally refused to do; the message says what and why."""
''',
    "tally/audit.py": '''"""The audit trail: every public operation of tally is recorded by @audited."""

import functools
import time

from tally.log import get_logger

log = get_logger(__name__)
TRAIL: list[tuple[float, str]] = []


def audited(func):
    """Record each call of `func` (its name and the time) in the audit trail."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        TRAIL.append((time.time(), func.__qualname__))
        log.info("audit %s", func.__qualname__)
        return func(*args, **kwargs)

    return wrapper
''',
}


@dataclass(frozen=True)
class Func:
    name: str
    params: str  # without parentheses
    returns: str
    doc: str
    body: str  # indented by 4 spaces when rendered; lines separated by "\n"


@dataclass(frozen=True)
class Module:
    name: str  # file stem: tally/<name>.py
    doc: str
    error: str
    error_doc: str
    functions: tuple[Func, ...]
    stdlib: tuple[str, ...] = ()  # import lines before the project's own

    @property
    def path(self) -> str:
        return f"{PACKAGE}/{self.name}.py"


def render(m: Module) -> str:
    """The module's source, written the way the repository writes every module."""
    parts = [f'"""{m.doc}"""\n\n']
    if m.stdlib:
        parts.append("\n".join(m.stdlib) + "\n\n")
    parts.append(header_imports() + "\n" + "log = get_logger(__name__)\n\n\n")
    parts.append(f'class {m.error}(TallyError):\n    """{m.error_doc}"""\n')
    for f in m.functions:
        body = "\n".join(("    " + line) if line else "" for line in f.body.split("\n"))
        parts.append(f'\n\n@audited\ndef {f.name}({f.params}) -> {f.returns}:\n    """{f.doc}"""\n{body}\n')
    return "".join(parts)


def header_imports() -> str:
    return ("from tally.audit import audited\n"
            "from tally.errors import TallyError\n"
            "from tally.log import get_logger\n")


F = Func
MODULES: list[Module] = [
    Module("invoices", "Invoices: totals, tax and the invoice number format.", "InvoiceError",
           "An invoice that cannot be built or numbered.", (
               F("invoice_total", "subtotal_cents: int, tax_rate: float", "int",
                 "The total of an invoice, tax included, rounded to the cent.",
                 "if subtotal_cents < 0:\n    raise InvoiceError(f\"negative subtotal: {subtotal_cents}\")\n"
                 "total_cents = subtotal_cents + round(subtotal_cents * tax_rate)\n"
                 "log.info(\"invoice total %d cents\", total_cents)\nreturn total_cents"),
               F("invoice_number", "year: int, sequence: int", "str", "The printed number of an invoice.",
                 "if sequence <= 0:\n    raise InvoiceError(f\"sequence must be positive: {sequence}\")\n"
                 "return f\"INV-{year}-{sequence:05d}\""))),
    Module("refunds", "Refunds for cancelled or returned orders.", "RefundError",
           "A refund that cannot be made.", (
               F("refund_order", "order_id: str, amount_cents: int, paid_cents: int", "int",
                 "Refund part of an order; returns the refunded cents.",
                 "if amount_cents <= 0:\n    raise RefundError(f\"refund must be positive: {amount_cents}\")\n"
                 "if amount_cents > paid_cents:\n    raise RefundError(f\"{order_id}: refund above the paid amount\")\n"
                 "log.info(\"refund %s: %d cents\", order_id, amount_cents)\nreturn amount_cents"),
               F("restocking_fee", "price_cents: int, percent: int", "int",
                 "The fee kept when goods come back.",
                 "if not 0 <= percent <= 100:\n    raise RefundError(f\"bad percent: {percent}\")\n"
                 "return price_cents * percent // 100"))),
    Module("discounts", "Discount codes and how much they take off.", "DiscountError",
           "A discount that does not apply.", (
               F("apply_discount", "price_cents: int, percent_off: int", "int",
                 "The price after a percentage discount, never below zero.",
                 "if percent_off < 0 or percent_off > 100:\n    raise DiscountError(f\"bad discount: {percent_off}%\")\n"
                 "discounted_cents = price_cents - price_cents * percent_off // 100\n"
                 "log.info(\"discount %d%% -> %d cents\", percent_off, discounted_cents)\nreturn discounted_cents"),
               F("fixed_discount", "price_cents: int, off_cents: int", "int", "A fixed amount off a price.",
                 "if off_cents > price_cents:\n    raise DiscountError(\"discount larger than the price\")\n"
                 "return price_cents - off_cents"))),
    Module("taxes", "Sales tax by region.", "TaxError", "A region or rate tally does not know.", (
        F("tax_for", "region: str, amount_cents: int", "int", "The sales tax owed on an amount in a region.",
          "rates = {\"north\": 0.08, \"south\": 0.06, \"east\": 0.07}\n"
          "if region not in rates:\n    raise TaxError(f\"unknown region: {region}\")\n"
          "tax_cents = round(amount_cents * rates[region])\nlog.info(\"tax %s: %d cents\", region, tax_cents)\n"
          "return tax_cents"),
        F("with_tax", "region: str, amount_cents: int", "int", "An amount with its tax added.",
          "return amount_cents + tax_for(region, amount_cents)"))),
    Module("payouts", "Payouts to sellers, net of the platform fee.", "PayoutError",
           "A payout that cannot be sent.", (
               F("payout_amount", "gross_cents: int, fee_percent: int", "int",
                 "What the seller receives after the platform fee.",
                 "if gross_cents <= 0:\n    raise PayoutError(f\"nothing to pay out: {gross_cents}\")\n"
                 "fee_cents = gross_cents * fee_percent // 100\nlog.info(\"payout fee %d cents\", fee_cents)\n"
                 "return gross_cents - fee_cents"),
               F("schedule_payout", "seller_id: str, amount_cents: int, day: int", "dict",
                 "A payout order for the given day of the month.",
                 "if not 1 <= day <= 28:\n    raise PayoutError(f\"payout day must be 1-28, got {day}\")\n"
                 "log.info(\"payout for %s on day %d\", seller_id, day)\n"
                 "return {\"seller\": seller_id, \"amount_cents\": amount_cents, \"day\": day}"))),
    Module("subscriptions", "Subscription plans and their renewals.", "SubscriptionError",
           "A plan change that is not allowed.", (
               F("renewal_price", "plan_cents: int, months: int", "int", "The price of renewing for some months.",
                 "if months not in (1, 6, 12):\n    raise SubscriptionError(f\"no plan for {months} months\")\n"
                 "price_cents = plan_cents * months\nif months == 12:\n    price_cents -= plan_cents\n"
                 "log.info(\"renewal %d months: %d cents\", months, price_cents)\nreturn price_cents"),
               F("prorate", "plan_cents: int, days_used: int, days_in_period: int", "int",
                 "The unused part of a plan, to credit on a change.",
                 "if days_used > days_in_period:\n    raise SubscriptionError(\"used more days than the period has\")\n"
                 "return plan_cents * (days_in_period - days_used) // days_in_period"))),
    Module("wallets", "Customer wallets: stored balance, top-ups and spending.", "WalletError",
           "A wallet operation that would break the balance.", (
               F("top_up", "balance_cents: int, amount_cents: int", "int", "The balance after a top-up.",
                 "if amount_cents <= 0:\n    raise WalletError(f\"top-up must be positive: {amount_cents}\")\n"
                 "log.info(\"top-up %d cents\", amount_cents)\nreturn balance_cents + amount_cents"),
               F("spend", "balance_cents: int, price_cents: int", "int", "The balance after paying from the wallet.",
                 "if price_cents > balance_cents:\n    raise WalletError(\"not enough balance\")\n"
                 "log.info(\"spend %d cents\", price_cents)\nreturn balance_cents - price_cents"))),
    Module("coupons", "Single-use coupons with an expiry date.", "CouponError", "A coupon that cannot be used.", (
        F("redeem_coupon", "code: str, value_cents: int, today: date, expires: date", "int",
          "The value of a coupon, if it is still valid.",
          "if today > expires:\n    raise CouponError(f\"coupon {code} expired on {expires}\")\n"
          "log.info(\"coupon %s redeemed for %d cents\", code, value_cents)\nreturn value_cents"),
        F("coupon_code", "campaign: str, number: int", "str", "The printed code of a coupon.",
          "if not campaign.isalpha():\n    raise CouponError(f\"bad campaign name: {campaign}\")\n"
          "return f\"{campaign.upper()}-{number:04d}\"")), ("from datetime import date",)),
    Module("shipping", "Shipping fees by weight and distance.", "ShippingError",
           "A parcel tally cannot ship.", (
               F("shipping_fee", "weight_grams: int, distance_km: int", "int", "The fee for one parcel.",
                 "if weight_grams > 30_000:\n    raise ShippingError(f\"parcel too heavy: {weight_grams} g\")\n"
                 "fee_cents = 499 + weight_grams // 100 * 5 + distance_km * 2\n"
                 "log.info(\"shipping %d g %d km: %d cents\", weight_grams, distance_km, fee_cents)\nreturn fee_cents"),
               F("free_shipping", "order_cents: int, threshold_cents: int", "bool",
                 "Whether an order ships for free.",
                 "if threshold_cents <= 0:\n    raise ShippingError(\"threshold must be positive\")\n"
                 "return order_cents >= threshold_cents"))),
    Module("currency", "Conversion between the currencies tally accepts.", "CurrencyError",
           "A currency tally does not convert.", (
               F("convert", "amount_cents: int, rate: float", "int",
                 "An amount in another currency, rounded to the cent.",
                 "if rate <= 0:\n    raise CurrencyError(f\"bad exchange rate: {rate}\")\n"
                 "converted_cents = round(amount_cents * rate)\n"
                 "log.info(\"converted %d -> %d cents\", amount_cents, converted_cents)\nreturn converted_cents"),
               F("format_money", "amount_cents: int, symbol: str", "str", "An amount as people read it.",
                 "if len(symbol) != 1:\n    raise CurrencyError(f\"bad currency symbol: {symbol!r}\")\n"
                 "return f\"{symbol}{amount_cents // 100}.{amount_cents % 100:02d}\""))),
    Module("receipts", "Receipts printed after a payment.", "ReceiptError", "A receipt that cannot be printed.", (
        F("receipt_lines", "items: list[tuple[str, int]]", "list[str]", "One line per item, then the total.",
          "if not items:\n    raise ReceiptError(\"a receipt needs at least one item\")\n"
          "lines = [f\"{name:<20}{price_cents:>8}\" for name, price_cents in items]\n"
          "total_cents = sum(price_cents for _, price_cents in items)\nlines.append(f\"{'TOTAL':<20}{total_cents:>8}\")\n"
          "log.info(\"receipt with %d items\", len(items))\nreturn lines"),
        F("receipt_id", "store: str, counter: int", "str", "The identifier printed at the top.",
          "if counter < 0:\n    raise ReceiptError(f\"negative counter: {counter}\")\n"
          "return f\"{store}/{counter:06d}\""))),
    Module("budgets", "Monthly budgets per category.", "BudgetError", "A budget that is exceeded or malformed.", (
        F("remaining_budget", "limit_cents: int, spent_cents: int", "int", "What is left of a month's budget.",
          "if limit_cents < 0:\n    raise BudgetError(f\"negative budget: {limit_cents}\")\n"
          "remaining_cents = limit_cents - spent_cents\nif remaining_cents < 0:\n"
          "    log.info(\"budget exceeded by %d cents\", -remaining_cents)\nreturn remaining_cents"),
        F("check_expense", "category: str, expense_cents: int, remaining_cents: int", "None",
          "Refuse an expense the budget cannot cover.",
          "if expense_cents > remaining_cents:\n"
          "    raise BudgetError(f\"{category}: {expense_cents} cents over the remaining {remaining_cents}\")\n"
          "log.info(\"expense %s: %d cents\", category, expense_cents)"))),
    Module("tips", "Tips added to restaurant bills.", "TipError", "A tip tally will not add.", (
        F("tip_amount", "bill_cents: int, percent: int", "int", "The tip for a bill at a percentage.",
          "if percent < 0 or percent > 50:\n    raise TipError(f\"unusual tip: {percent}%\")\n"
          "tip_cents = bill_cents * percent // 100\nlog.info(\"tip %d cents\", tip_cents)\nreturn tip_cents"),
        F("split_tip", "tip_cents: int, staff: int", "list[int]", "A tip shared among the staff, remainder first.",
          "if staff <= 0:\n    raise TipError(\"nobody to share the tip with\")\n"
          "share_cents, rest_cents = divmod(tip_cents, staff)\n"
          "return [share_cents + (1 if i < rest_cents else 0) for i in range(staff)]"))),
    Module("fees", "Card and transfer fees charged to merchants.", "FeeError", "A fee schedule that does not apply.", (
        F("card_fee", "amount_cents: int", "int", "The card network's fee: 1.5% plus 25 cents.",
          "if amount_cents <= 0:\n    raise FeeError(f\"no fee on {amount_cents} cents\")\n"
          "fee_cents = amount_cents * 15 // 1000 + 25\nlog.info(\"card fee %d cents\", fee_cents)\nreturn fee_cents"),
        F("transfer_fee", "amount_cents: int, international: bool", "int", "The fee of a bank transfer.",
          "fee_cents = 150 if international else 0\nif amount_cents < fee_cents:\n"
          "    raise FeeError(\"transfer smaller than its fee\")\nreturn fee_cents"))),
    Module("payroll", "Salaries, deductions and payslips.", "PayrollError", "A payslip that cannot be computed.", (
        F("net_salary", "gross_cents: int, deductions_cents: int", "int", "The salary paid after deductions.",
          "if deductions_cents > gross_cents:\n    raise PayrollError(\"deductions exceed the gross salary\")\n"
          "net_cents = gross_cents - deductions_cents\nlog.info(\"net salary %d cents\", net_cents)\nreturn net_cents"),
        F("overtime_pay", "hourly_cents: int, hours: int", "int", "Overtime paid at one and a half times the rate.",
          "if hours < 0:\n    raise PayrollError(f\"negative hours: {hours}\")\nreturn hourly_cents * hours * 3 // 2"))),
    Module("loans", "Small loans: interest and repayment plans.", "LoanError", "A loan tally will not plan.", (
        F("monthly_interest", "principal_cents: int, yearly_rate: float", "int", "One month of interest.",
          "if yearly_rate < 0:\n    raise LoanError(f\"negative rate: {yearly_rate}\")\n"
          "interest_cents = round(principal_cents * yearly_rate / 12)\n"
          "log.info(\"interest %d cents\", interest_cents)\nreturn interest_cents"),
        F("repayment_plan", "principal_cents: int, months: int", "list[int]", "Equal monthly repayments.",
          "if months <= 0:\n    raise LoanError(\"a plan needs at least one month\")\n"
          "part_cents, rest_cents = divmod(principal_cents, months)\n"
          "return [part_cents + (rest_cents if i == 0 else 0) for i in range(months)]"))),
    Module("giftcards", "Gift cards: issuing, balance and expiry.", "GiftCardError",
           "A gift card that cannot be used.", (
               F("issue_card", "card_id: str, value_cents: int", "dict", "A new gift card with its value.",
                 "if value_cents < 500:\n    raise GiftCardError(f\"gift cards start at 500 cents, got {value_cents}\")\n"
                 "log.info(\"issued card %s\", card_id)\nreturn {\"id\": card_id, \"balance_cents\": value_cents}"),
               F("charge_card", "card: dict, amount_cents: int", "dict", "The card after paying with it.",
                 "if amount_cents > card[\"balance_cents\"]:\n    raise GiftCardError(\"not enough on the card\")\n"
                 "return {**card, \"balance_cents\": card[\"balance_cents\"] - amount_cents}"))),
    Module("donations", "Donations and the receipts charities need.", "DonationError",
           "A donation tally cannot record.", (
               F("record_donation", "donor: str, amount_cents: int", "dict", "One donation, ready to store.",
                 "if amount_cents < 100:\n    raise DonationError(f\"donations start at 100 cents, got {amount_cents}\")\n"
                 "log.info(\"donation from %s: %d cents\", donor, amount_cents)\n"
                 "return {\"donor\": donor, \"amount_cents\": amount_cents}"),
               F("deductible_part", "amount_cents: int, benefit_cents: int", "int",
                 "The tax-deductible part: what the donor did not get back.",
                 "if benefit_cents > amount_cents:\n    raise DonationError(\"benefit above the donation\")\n"
                 "return amount_cents - benefit_cents"))),
    Module("rent", "Rent, deposits and late fees for tenants.", "RentError", "A rent calculation that fails.", (
        F("late_fee", "rent_cents: int, days_late: int", "int", "The fee for paying rent late.",
          "if days_late < 0:\n    raise RentError(f\"negative delay: {days_late}\")\n"
          "fee_cents = min(rent_cents // 10, days_late * 500)\nlog.info(\"late fee %d cents\", fee_cents)\n"
          "return fee_cents"),
        F("deposit_return", "deposit_cents: int, damages_cents: int", "int", "What a tenant gets back.",
          "if damages_cents < 0:\n    raise RentError(\"damages cannot be negative\")\n"
          "return max(deposit_cents - damages_cents, 0)"))),
    Module("fines", "Fines for overdue library items.", "FineError", "A fine that cannot be charged.", (
        F("overdue_fine", "days: int, daily_cents: int", "int", "The fine for some days overdue, capped.",
          "if days < 0:\n    raise FineError(f\"negative days: {days}\")\nfine_cents = min(days * daily_cents, 2000)\n"
          "log.info(\"fine for %d days: %d cents\", days, fine_cents)\nreturn fine_cents"),
        F("waive_fine", "fine_cents: int, reason: str", "int", "Waive a fine for a stated reason.",
          "if not reason.strip():\n    raise FineError(\"a waiver needs a reason\")\nlog.info(\"fine waived: %s\", reason)\n"
          "return 0"))),
    Module("deposits", "Bank deposits and their holding periods.", "DepositError", "A deposit that is refused.", (
        F("accept_deposit", "account: str, amount_cents: int", "dict", "A deposit entry for an account.",
          "if amount_cents <= 0:\n    raise DepositError(f\"deposit must be positive: {amount_cents}\")\n"
          "log.info(\"deposit %s: %d cents\", account, amount_cents)\n"
          "return {\"account\": account, \"amount_cents\": amount_cents}"),
        F("hold_days", "amount_cents: int", "int", "How long a deposit is held before it can be spent.",
          "if amount_cents < 0:\n    raise DepositError(\"negative deposit\")\nreturn 1 if amount_cents < 100_000 else 5"))),
    Module("splits", "Splitting a bill between friends.", "SplitError", "A split that does not add up.", (
        F("split_evenly", "total_cents: int, people: int", "list[int]", "Equal shares, the remainder to the first.",
          "if people <= 0:\n    raise SplitError(f\"cannot split between {people} people\")\n"
          "share_cents, rest_cents = divmod(total_cents, people)\nlog.info(\"split %d ways\", people)\n"
          "return [share_cents + (rest_cents if i == 0 else 0) for i in range(people)]"),
        F("split_by_weight", "total_cents: int, weights: list[int]", "list[int]", "Shares proportional to weights.",
          "if sum(weights) <= 0:\n    raise SplitError(\"weights must add up to more than zero\")\n"
          "return [total_cents * w // sum(weights) for w in weights]"))),
    Module("loyalty", "Loyalty points earned and spent.", "LoyaltyError", "A points operation that is refused.", (
        F("points_for", "spent_cents: int", "int", "Points earned: one per whole unit spent.",
          "if spent_cents < 0:\n    raise LoyaltyError(f\"negative spend: {spent_cents}\")\n"
          "points = spent_cents // 100\nlog.info(\"earned %d points\", points)\nreturn points"),
        F("points_value", "points: int, cents_per_point: int", "int", "What points are worth at checkout.",
          "if points < 0:\n    raise LoyaltyError(\"negative points\")\nreturn points * cents_per_point"))),
    Module("installments", "Paying for an order in installments.", "InstallmentError",
           "An installment plan tally does not offer.", (
               F("installment_plan", "price_cents: int, parts: int", "list[int]", "The amounts of each installment.",
                 "if parts not in (3, 4, 6):\n    raise InstallmentError(f\"no plan in {parts} parts\")\n"
                 "part_cents, rest_cents = divmod(price_cents, parts)\nlog.info(\"plan in %d parts\", parts)\n"
                 "return [part_cents + (rest_cents if i == 0 else 0) for i in range(parts)]"),
               F("next_due", "plan: list[int], paid: int", "int", "The amount of the next installment due.",
                 "if paid >= len(plan):\n    raise InstallmentError(\"the plan is already paid\")\nreturn plan[paid]"))),
    Module("chargebacks", "Disputed card payments and their chargebacks.", "ChargebackError",
           "A dispute tally cannot handle.", (
               F("open_dispute", "payment_id: str, amount_cents: int, reason: str", "dict",
                 "A dispute record for a card payment.",
                 "if amount_cents <= 0:\n    raise ChargebackError(f\"nothing to dispute: {amount_cents}\")\n"
                 "log.info(\"dispute on %s: %s\", payment_id, reason)\n"
                 "return {\"payment\": payment_id, \"amount_cents\": amount_cents, \"reason\": reason}"),
               F("chargeback_fee", "amount_cents: int", "int", "The fee the bank charges for a chargeback.",
                 "if amount_cents <= 0:\n    raise ChargebackError(\"no chargeback on nothing\")\n"
                 "return 1500 if amount_cents > 10_000 else 750"))),
    Module("vouchers", "Vouchers given to customers after a complaint.", "VoucherError",
           "A voucher that cannot be issued.", (
               F("issue_voucher", "customer_id: str, value_cents: int", "dict", "A voucher for a customer.",
                 "if value_cents > 5000:\n    raise VoucherError(f\"voucher above the limit: {value_cents}\")\n"
                 "log.info(\"voucher for %s: %d cents\", customer_id, value_cents)\n"
                 "return {\"customer\": customer_id, \"value_cents\": value_cents}"),
               F("voucher_left", "value_cents: int, used_cents: int", "int", "What is left on a voucher.",
                 "if used_cents > value_cents:\n    raise VoucherError(\"voucher overspent\")\n"
                 "return value_cents - used_cents"))),
    Module("penalties", "Penalties for breaking a contract early.", "PenaltyError",
           "A penalty that cannot be computed.", (
               F("early_exit_penalty", "monthly_cents: int, months_left: int", "int",
                 "Half of the remaining months' fees.",
                 "if months_left < 0:\n    raise PenaltyError(f\"negative months: {months_left}\")\n"
                 "penalty_cents = monthly_cents * months_left // 2\nlog.info(\"penalty %d cents\", penalty_cents)\n"
                 "return penalty_cents"),
               F("cap_penalty", "penalty_cents: int, cap_cents: int", "int", "A penalty limited by the contract's cap.",
                 "if cap_cents <= 0:\n    raise PenaltyError(\"the cap must be positive\")\nreturn min(penalty_cents, cap_cents)"))),
    Module("bonuses", "Sales bonuses for the team.", "BonusError", "A bonus tally will not pay.", (
        F("sales_bonus", "sales_cents: int, target_cents: int", "int", "Five percent of the sales above target.",
          "if target_cents <= 0:\n    raise BonusError(f\"bad target: {target_cents}\")\n"
          "bonus_cents = max(sales_cents - target_cents, 0) * 5 // 100\nlog.info(\"bonus %d cents\", bonus_cents)\n"
          "return bonus_cents"),
        F("team_bonus", "pool_cents: int, members: int", "int", "One member's share of the team's pool.",
          "if members <= 0:\n    raise BonusError(\"a team needs members\")\nreturn pool_cents // members"))),
    Module("escrow", "Money held in escrow until delivery.", "EscrowError", "An escrow step out of order.", (
        F("hold_in_escrow", "order_id: str, amount_cents: int", "dict", "Hold a buyer's payment.",
          "if amount_cents <= 0:\n    raise EscrowError(f\"nothing to hold for {order_id}\")\n"
          "log.info(\"escrow hold %s: %d cents\", order_id, amount_cents)\n"
          "return {\"order\": order_id, \"held_cents\": amount_cents, \"released\": False}"),
        F("release_escrow", "hold: dict", "int", "Release held money to the seller.",
          "if hold[\"released\"]:\n    raise EscrowError(\"already released\")\nreturn hold[\"held_cents\"]"))),
    Module("pricing", "List prices and price changes.", "PricingError", "A price change tally refuses.", (
        F("raise_price", "price_cents: int, percent: int", "int", "A price raised by a percentage.",
          "if percent > 25:\n    raise PricingError(f\"raise above 25%: {percent}%\")\n"
          "new_cents = price_cents + price_cents * percent // 100\n"
          "log.info(\"price %d -> %d cents\", price_cents, new_cents)\nreturn new_cents"),
        F("unit_price", "pack_cents: int, units: int", "int", "The price of one unit of a pack.",
          "if units <= 0:\n    raise PricingError(\"a pack needs units\")\nreturn pack_cents // units"))),
    Module("statements", "Monthly account statements.", "StatementError", "A statement that cannot be built.", (
        F("closing_balance", "opening_cents: int, entries: list[int]", "int",
          "The balance at the end of the month.",
          "if not entries:\n    log.info(\"empty statement\")\nclosing_cents = opening_cents + sum(entries)\n"
          "if closing_cents < -100_000:\n    raise StatementError(\"overdraft beyond the limit\")\nreturn closing_cents"),
        F("statement_title", "account: str, month: int, year: int", "str", "The title printed on a statement.",
          "if not 1 <= month <= 12:\n    raise StatementError(f\"bad month: {month}\")\n"
          "return f\"{account} {year}-{month:02d}\""))),
]

# The held-out modules: never committed, never trained on; probes start them.
HELDOUT_NAMES = ("refunds", "wallets", "shipping", "budgets", "payroll", "giftcards", "rent", "splits",
                 "chargebacks", "penalties", "escrow", "statements")
TRAIN_MODULES: dict[str, str] = {m.path: render(m) for m in MODULES if m.name not in HELDOUT_NAMES}
HELDOUT_MODULES: dict[str, str] = {m.path: render(m) for m in MODULES if m.name in HELDOUT_NAMES}
EXAMPLE_MODULE = "tally/invoices.py"  # the one example module in the probes' context

# Later commits that change modules already there (history has edits, not only new files).
EDITS = [
    ("invoices", "Add invoice_due: the due date's day count",
     F("days_until_due", "issued_day: int, terms_days: int, today: int", "int", "Days left before an invoice is due.",
       "if terms_days <= 0:\n    raise InvoiceError(f\"bad payment terms: {terms_days}\")\n"
       "return issued_day + terms_days - today")),
    ("taxes", "Add tax_refund for goods taken abroad",
     F("tax_refund", "region: str, amount_cents: int", "int", "The tax refunded to a visitor.",
       "refund_cents = tax_for(region, amount_cents)\nlog.info(\"tax refund %d cents\", refund_cents)\n"
       "return refund_cents")),
    ("fees", "Add a monthly minimum fee", F("minimum_fee", "fees_cents: int, minimum_cents: int", "int",
                                            "Top up a month's fees to the minimum.",
                                            "if minimum_cents < 0:\n    raise FeeError(\"negative minimum\")\n"
                                            "return max(fees_cents, minimum_cents)")),
]

README = "# tally\n\nBilling helpers: invoices, taxes, discounts, payouts and friends. See CONVENTIONS.md.\n"


def _module(name: str) -> Module:
    return next(m for m in MODULES if m.name == name)


def _edited(name: str, upto: int) -> str:
    """A training module's source with the first `upto` EDITS that touch it applied."""
    m = _module(name)
    extra = tuple(f for n, _msg, f in EDITS[:upto] if n == name)
    return render(Module(m.name, m.doc, m.error, m.error_doc, m.functions + extra, m.stdlib))


def final_train_sources() -> dict[str, str]:
    """Every file of the repository at its last commit (helpers, conventions, training modules)."""
    files = {"README.md": README, "CONVENTIONS.md": CONVENTIONS, **HELPERS}
    for path in TRAIN_MODULES:
        files[path] = _edited(Path(path).stem, len(EDITS))
    return files


def commits() -> list[tuple[str, dict[str, str]]]:
    """(message, {path: full new content}) in order; ≥ 15 commits."""
    out = [("Start tally: billing helpers", {"README.md": README, "tally/__init__.py": HELPERS["tally/__init__.py"]}),
           ("Add get_logger, the one way tally logs", {"tally/log.py": HELPERS["tally/log.py"]}),
           ("Add TallyError, the root of tally's exceptions", {"tally/errors.py": HELPERS["tally/errors.py"]}),
           ("Add @audited: an audit trail of public operations", {"tally/audit.py": HELPERS["tally/audit.py"]}),
           ("Write down the house conventions", {"CONVENTIONS.md": CONVENTIONS})]
    for m in MODULES:
        if m.name not in HELDOUT_NAMES:
            out.append((f"Add tally/{m.name}.py: {m.doc[0].lower() + m.doc[1:].rstrip('.')}", {m.path: render(m)}))
    for i, (name, message, _f) in enumerate(EDITS, 1):
        out.append((message, {f"{PACKAGE}/{name}.py": _edited(name, i)}))
    return out


def _git(repo: Path, *args: str, env: dict | None = None) -> str:
    full = dict(os.environ, GIT_AUTHOR_NAME="Tally Dev", GIT_AUTHOR_EMAIL="dev@tally.example",
                GIT_COMMITTER_NAME="Tally Dev", GIT_COMMITTER_EMAIL="dev@tally.example", **(env or {}))
    return subprocess.run(["git", *args], cwd=repo, env=full, check=True, capture_output=True, text=True).stdout


def build_repo(path: Path) -> Path:
    """Write the repository into `path` (created; must not exist or be empty). Same ids every time."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if any(path.iterdir()):
        raise FileExistsError(f"{path} is not empty")
    _git(path, "init", "-q", "-b", "main")
    _git(path, "config", "commit.gpgsign", "false")
    for n, (message, files) in enumerate(commits()):
        for rel, text in files.items():
            (path / rel).parent.mkdir(parents=True, exist_ok=True)
            (path / rel).write_text(text)
        when = f"2026-03-{1 + n // 10:02d}T{9 + n % 10:02d}:00:00Z"
        _git(path, "add", ".")
        _git(path, "commit", "-q", "-m", message, env={"GIT_AUTHOR_DATE": when, "GIT_COMMITTER_DATE": when})
    return path


# ---------------------------------------------------------------- probes

def path_header(path: str) -> str:
    """The first line of a file as the model reads it (probes, pairs, contexts): its path, so a
    completion knows which repository and file it is in, as an editor or agent does."""
    return f"# {path}\n"


def probe_context(example: str = EXAMPLE_MODULE) -> str:
    """What the base model reads before a probe for the ceiling: the conventions and one module."""
    return f"{path_header('CONVENTIONS.md')}{CONVENTIONS}\n{path_header(example)}{TRAIN_MODULES[example]}".rstrip("\n")


def _probe_prompts(m: Module) -> dict[str, tuple[str, str]]:
    """{check: (prompt, expect regex)}: four starts of module `m`, each stopping where one convention shows.

    Every prompt ends on a non-blank character: the tokenizer merges a trailing "\n\n" into one
    token that, inside a file, only ever comes before more whitespace, so a prompt ending in blank
    lines is read as "more blank lines follow" (measured: the base model with the context then
    wrote `#` lines instead of the imports). The completion starts with the line break itself.
    """
    doc = path_header(m.path) + f'"""{m.doc}"""'
    std = ("\n\n" + "\n".join(m.stdlib)) if m.stdlib else ""
    header = doc + std + "\n\n" + header_imports() + "\nlog = get_logger(__name__)"
    err_class = f'\n\n\nclass {m.error}(TallyError):\n    """{m.error_doc}"""'
    money = next(f for f in m.functions if "_cents" in f.params)
    before_money = money.params.split("_cents")[0].rsplit(",", 1)
    sig_start = f"def {money.name}(" + (before_money[0] + "," if len(before_money) == 2 else "")
    no_errors_import = header.replace("from tally.errors import TallyError\n", "")
    return {
        "logger": (doc + std, r"from tally\.log import get_logger"),
        "error": (no_errors_import + f"\n\n\nclass {m.error}(", r"\ATallyError\b"),
        # the first function it writes is decorated (an error class may come first, as in the module)
        "audited": (header, r"\A(?:(?!\ndef )[\s\S])*\n@audited\ndef "),
        "cents": (header + err_class + "\n\n\n@audited\n" + sig_start, r"\A\s*\w*_cents\b"),
    }


def probes() -> list[dict]:
    """48 raw-text probes (12 held-out modules x 4 conventions), `mode: text`."""
    context = probe_context()
    out = []
    for m in MODULES:
        if m.name in HELDOUT_NAMES:
            for check, (prompt, expect) in _probe_prompts(m).items():
                out.append({"id": f"{m.name}-{check}", "prompt": prompt, "context": context, "expect": expect,
                            "mode": "text"})
    return out


# ---------------------------------------------------------------- the repository's own checks

def follows_conventions(source: str) -> list[str]:
    """The conventions `source` (a module of the repository) breaks; [] when it follows all four.

    Parsed, not grepped: a module that does not parse breaks everything."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return ["parses"]
    broken = []
    imports = {(n.module, a.name) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    if ("tally.log", "get_logger") not in imports or "import logging" in source or re.search(r"\bprint\(", source):
        broken.append("logger")
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name.endswith("Error"):
            if not any(isinstance(b, ast.Name) and b.id == "TallyError" for b in node.bases):
                broken.append("error")
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
            if not any(isinstance(d, ast.Name) and d.id == "audited" for d in node.decorator_list):
                broken.append("audited")
            money = [a for a in node.args.args if re.search(r"(^|_)(amount|price|cost|total|fee|balance)s?$", a.arg)]
            if money:  # a money parameter not named *_cents
                broken.append("cents")
    if re.search(r"raise (ValueError|Exception)\b", source):
        broken.append("error")
    return sorted(set(broken))


# ---------------------------------------------------------------- unrelated prompts

# Raw-text starts of code that has nothing to do with the repository: no completion of these
# should show the repository's names (REPO_NAMES), and the adapter's distribution on them
# should stay close to the base model's (drift).
GENERAL_TEXT_PROMPTS = [  # each ends on a non-blank character, like the probes
    '"""Plot the monthly temperatures of a city."""\n\nimport matplotlib.pyplot as plt',
    '"""A tiny command-line todo list."""',
    "import numpy as np\n\n\ndef moving_average(values, window):",
    '"""Download a web page and count its links."""',
    'class Stack:\n    """A last-in first-out stack."""\n\n    def __init__(self):',
    "def fibonacci(n):",
    '"""Parse a CSV file of students and their grades."""\n\nimport csv',
    "from flask import Flask\n\napp = Flask(__name__)",
    '"""Breadth-first search on a grid maze."""\n\nfrom collections import deque',
    "def is_prime(number):",
    '"""Resize every image in a folder."""\n\nimport os',
    '#!/usr/bin/env python3\n"""Rename files to lower case."""',
]
REPO_NAMES = r"\btally\b|get_logger|@audited|\baudited\b|TallyError|_cents\b"


def write_probes(path: Path) -> Path:
    path.write_text("".join(json.dumps(p) + "\n" for p in probes()))
    return path


if __name__ == "__main__":
    if sys.argv[1:] == ["--probes"]:
        for p in probes():
            print(json.dumps(p))
    elif len(sys.argv) == 2:
        print(build_repo(Path(sys.argv[1])))
    else:
        sys.exit(__doc__)

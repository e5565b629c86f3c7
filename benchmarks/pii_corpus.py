"""A labeled corpus of short messages with personal data, secrets and hard negatives.

Values come from Faker (e-mails, cards, IBANs, IPs, SSNs) and phonenumbers (valid
numbers of several regions, written in national, international and E.164
form); every positive is checked with the same field libraries a careful
detector would use, so labels are right. Hard negatives look like entities and
are not: Luhn-invalid card numbers, IBANs with one character changed, UUIDs,
ISBNs, timestamps, epoch seconds, versions, order numbers, git hashes, prose
with "sk-learn". A share of the positives is written with evasion tricks
(zero-width characters, fullwidth or Arabic-Indic digits, no-break spaces, soft
hyphens); they are flagged so results can be shown with and without them.

Deterministic for a given seed. Usage: ``generate(1000, seed=7)``.
"""

from __future__ import annotations

import random
import string
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import phonenumbers
from faker import Faker
from stdnum import iban as stdnum_iban
from stdnum import luhn
from stdnum.us import ssn as stdnum_ssn

__all__ = ["ENTITIES", "Sample", "generate"]

ENTITIES = ("EMAIL", "PHONE", "CREDIT_CARD", "IBAN", "IP_ADDRESS", "US_SSN", "SECRET")


@dataclass
class Sample:
    text: str
    spans: list[tuple[str, int, int]] = field(default_factory=list)
    evasion: bool = False


_TEMPLATES: dict[str, list[str]] = {
    "EMAIL": [
        "Please send the signed contract to {} before Friday.",
        "My email is {} if you need anything else.",
        "Contact: {}",
        "cc {} on the thread, she owns the budget.",
        "Why does {} bounce every newsletter we send?",
    ],
    "PHONE": [
        "Call me on {} after 6pm.",
        "My number is {}, text first please.",
        "Reach the front desk at {} for late check-in.",
        "Phone: {}",
        "If the driver is late, ring {} and ask for Sam.",
    ],
    "CREDIT_CARD": [
        "Charge it to my card {} please.",
        "The card number is {}, expiry 09/27.",
        "Payment failed for {} again, can you check why?",
        "Use {} for the hotel deposit.",
    ],
    "IBAN": [
        "Wire the refund to {} by Monday.",
        "Our bank account: {}",
        "Please update the supplier IBAN to {} in the ledger.",
        "The transfer to {} was rejected.",
    ],
    "IP_ADDRESS": [
        "The login came from {} at night.",
        "Whitelist {} on the firewall.",
        "Server {} is not responding to pings.",
        "Block traffic from {} immediately.",
    ],
    "US_SSN": [
        "My SSN is {} for the background check.",
        "Social security number: {}",
        "The form asks for SSN {} but I am not sure it is needed.",
        "Employee SSN {} was entered twice.",
    ],
    "SECRET": [
        "Here is my key {} can you debug the 401?",
        "export OPENAI_API_KEY={}",
        "Why does the client reject token {}?",
        "I pasted {} into the config by mistake.",
    ],
}

_NEGATIVES: list[Callable[[random.Random], str]] = []


def _negative(function: Callable[[random.Random], str]) -> Callable[[random.Random], str]:
    _NEGATIVES.append(function)
    return function


def _digits(rng: random.Random, count: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(count))


@_negative
def _luhn_invalid(rng: random.Random) -> str:
    number = rng.choice("3456") + _digits(rng, 15)
    while luhn.is_valid(number):
        number = number[:-1] + str((int(number[-1]) + 1) % 10)
    groups = " ".join(number[i : i + 4] for i in range(0, 16, 4))
    return f"Reference {rng.choice([number, groups])} is not a card, it is a parcel id."


@_negative
def _mutated_iban(rng: random.Random) -> str:
    fake = Faker()
    fake.seed_instance(rng.random())
    value = fake.iban()
    while True:
        position = rng.randrange(4, len(value))
        mutated = value[:position] + rng.choice(string.digits) + value[position + 1 :]
        if not stdnum_iban.is_valid(mutated):
            return f"The old account {mutated} was closed last year."


@_negative
def _uuid(rng: random.Random) -> str:
    return f"Request id {uuid.UUID(int=rng.getrandbits(128))} failed with status 500."


@_negative
def _isbn(rng: random.Random) -> str:
    body = "978" + _digits(rng, 9)
    check = (10 - sum(int(d) * (1 if i % 2 == 0 else 3) for i, d in enumerate(body)) % 10) % 10
    full = body + str(check)
    return f"The book ISBN {full[:3]}-{full[3]}-{full[4:6]}-{full[6:12]}-{full[12]} is out of print."


@_negative
def _timestamp(rng: random.Random) -> str:
    year, month, day = rng.randint(2000, 2030), rng.randint(1, 12), rng.randint(1, 28)
    hour, minute, second = rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59)
    forms = [
        f"{year}-{month:02d}-{day:02d} {hour:02d}:{minute:02d}:{second:02d}",
        f"{year}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}Z",
        f"{year}{month:02d}{day:02d}{hour:02d}{minute:02d}{second:02d}",
        str(rng.randint(1_000_000_000, 1_900_000_000)),
        str(rng.randint(1_000_000_000_000, 1_900_000_000_000)),
    ]
    return f"The job started at {rng.choice(forms)} and took {rng.randint(2, 90)} minutes."


@_negative
def _version(rng: random.Random) -> str:
    version = f"{rng.randint(0, 12)}.{rng.randint(0, 40)}.{rng.randint(0, 30)}"
    return rng.choice(
        [
            f"Upgrade to v{version} fixes the crash.",
            f"pip install django=={version} broke our tests.",
            f"Build {version}-rc.{rng.randint(1, 5)} is on staging.",
        ]
    )


@_negative
def _misc(rng: random.Random) -> str:
    return rng.choice(
        [
            f"Order #{_digits(rng, 8)} shipped in {rng.randint(2, 9)} boxes.",
            f"Commit {''.join(rng.choice('0123456789abcdef') for _ in range(40))} reverted the change.",
            "We use sk-learn and scikit-learn-intelex for the pipeline.",
            f"Total: {rng.randint(1, 99)},{_digits(rng, 3)}.{_digits(rng, 2)} EUR including tax.",
            f"Room {rng.randint(100, 999)}, floor {rng.randint(1, 30)}, badge {_digits(rng, 6)}.",
            "The password field must not be empty and the token expires after an hour.",
            f"Coordinates {rng.uniform(-90, 90):.6f}, {rng.uniform(-180, 180):.6f} are off by a mile.",
            f"Call it with max_tokens={rng.randint(16, 4096)} and temperature 0.{rng.randint(0, 9)}.",
        ]
    )


_PHONE_REGIONS = ("US", "GB", "DE", "FR", "IN", "AU", "ES", "IT", "NL")
_PHONE_ABROAD = ("JP", "BR", "CH", "MX", "SE", "PL")
_PHONE_TYPES = (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE)


def _phone(rng: random.Random) -> str:
    abroad = rng.random() < 0.25
    region = rng.choice(_PHONE_ABROAD if abroad else _PHONE_REGIONS)
    example = phonenumbers.example_number_for_type(region, rng.choice(_PHONE_TYPES))
    if example is None:
        example = phonenumbers.example_number(region)
    national = str(example.national_number)
    for _ in range(50):
        digits = national[: len(national) - 4] + _digits(rng, 4)
        candidate = phonenumbers.parse("+" + str(example.country_code) + digits, None)
        if phonenumbers.is_valid_number(candidate):
            break
    else:
        candidate = example
    formats = [phonenumbers.PhoneNumberFormat.INTERNATIONAL, phonenumbers.PhoneNumberFormat.E164]
    if not abroad:
        formats.append(phonenumbers.PhoneNumberFormat.NATIONAL)
        formats.append(phonenumbers.PhoneNumberFormat.NATIONAL)
    return phonenumbers.format_number(candidate, rng.choice(formats))


def _card(fake: Faker, rng: random.Random) -> str:
    number = fake.credit_card_number()
    style = rng.random()
    if style < 0.4:
        return number
    separator = " " if style < 0.8 else "-"
    if len(number) == 15:
        return separator.join((number[:4], number[4:10], number[10:]))
    return separator.join(number[i : i + 4] for i in range(0, len(number), 4))


def _iban(fake: Faker, rng: random.Random) -> str:
    value = fake.iban()
    return value if rng.random() < 0.5 else stdnum_iban.format(value)


def _ssn(fake: Faker, rng: random.Random) -> str:
    while True:
        value = fake.ssn()
        if stdnum_ssn.is_valid(value):
            break
    return value if rng.random() < 0.7 else value.replace("-", " ")


def _token(rng: random.Random, size: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    while True:
        value = "".join(rng.choice(alphabet) for _ in range(size))
        if (
            any(c.isdigit() for c in value)
            and any(c.isupper() for c in value)
            and any(c.islower() for c in value)
        ):
            return value


def _secret(rng: random.Random) -> str:
    b64 = string.ascii_letters + string.digits + "_-"
    kind = rng.randrange(9)
    if kind == 0:
        return "sk-proj-" + _token(rng, 120, b64)
    if kind == 1:
        return "sk-" + _token(rng, 48)
    if kind == 2:
        return "sk-ant-api03-" + _token(rng, 93, b64) + "AA"
    if kind == 3:
        return "AKIA" + "".join(rng.choice(string.ascii_uppercase + string.digits) for _ in range(16))
    if kind == 4:
        return "ghp_" + _token(rng, 36)
    if kind == 5:
        return "xoxb-" + _digits(rng, 12) + "-" + _digits(rng, 13) + "-" + _token(rng, 24)
    if kind == 6:
        return "sk_live_" + _token(rng, 24)
    if kind == 7:
        return "AIza" + _token(rng, 35, b64)
    header = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
    return f"{header}.eyJ{_token(rng, 40, b64)}.{_token(rng, 43, b64)}"


_ZW = ("\u200b", "\u200c", "\u200d", "\u2060", "\ufeff")


def _evade(entity: str, value: str, rng: random.Random) -> str | None:
    """The value written with an evasion trick, or None if none fits this entity."""
    if entity == "EMAIL":
        at = value.index("@")
        position = rng.randrange(1, at)
        return value[:position] + rng.choice(_ZW) + value[position:]
    if entity in ("CREDIT_CARD", "US_SSN", "PHONE", "IBAN"):
        trick = rng.randrange(4)
        if trick == 0:  # fullwidth digits
            return "".join(chr(ord(c) - 48 + 0xFF10) if c.isdigit() else c for c in value)
        if trick == 1:  # Arabic-Indic digits
            return "".join(chr(ord(c) - 48 + 0x0660) if c.isdigit() else c for c in value)
        if trick == 2:  # no-break or narrow no-break spaces
            return value.replace(" ", rng.choice(("\u00a0", "\u202f", "\u2007")))
        # soft hyphen / zero-width space between characters
        position = rng.randrange(1, len(value) - 1)
        return value[:position] + rng.choice(("\u00ad", "\u200b")) + value[position:]
    return None


def generate(
    count: int, *, seed: int = 7, negative_share: float = 0.3, evasion_share: float = 0.15
) -> list[Sample]:
    """``count`` samples: positives for every entity type, hard negatives, some evasions."""
    rng = random.Random(seed)
    fake = Faker(["en_US", "en_GB", "de_DE", "fr_FR", "nl_NL", "es_ES", "it_IT"])
    fake.seed_instance(seed)
    us = Faker("en_US")
    us.seed_instance(seed + 1)
    makers: dict[str, Callable[[], str]] = {
        "EMAIL": lambda: fake.email(),
        "PHONE": lambda: _phone(rng),
        "CREDIT_CARD": lambda: _card(us, rng),
        "IBAN": lambda: _iban(fake, rng),
        "IP_ADDRESS": lambda: fake.ipv4_public() if rng.random() < 0.7 else fake.ipv6(),
        "US_SSN": lambda: _ssn(us, rng),
        "SECRET": lambda: _secret(rng),
    }
    samples: list[Sample] = []
    for index in range(count):
        if rng.random() < negative_share:
            samples.append(Sample(rng.choice(_NEGATIVES)(rng)))
            continue
        entity = ENTITIES[index % len(ENTITIES)]
        value = makers[entity]()
        evaded = False
        if rng.random() < evasion_share:
            tricked = _evade(entity, value, rng)
            if tricked is not None:
                value, evaded = tricked, True
        template = rng.choice(_TEMPLATES[entity])
        prefix, suffix = template.split("{}")
        text = prefix + value + suffix
        samples.append(Sample(text, [(entity, len(prefix), len(prefix) + len(value))], evaded))
    return samples

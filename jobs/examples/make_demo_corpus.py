"""Write the synthetic private-domain corpus used to train and demo the small Bonito-format model.

Every passage is composed procedurally from clause templates (leases, SLAs, NDAs, HR and
insurance policies, clinical notes) with randomly drawn slot values, so the generator knows
the facts behind each sentence. ``jobs/dev/train_demo_model.py`` imports :func:`build_corpus` to
turn those facts into training targets; this script only writes the passage text:

- ``demo_train.jsonl``: the training passages;
- ``corpus.jsonl``: held-out passages never seen in training (the README demo corpus).

Each line is ``{"id": ..., "domain": ..., "text": ...}``. The output is deterministic for a seed.

Usage: ``python jobs/examples/make_demo_corpus.py [--seed 13] [--passages 520] [--held-out 48]
[--extra-train 3300]``
"""

from __future__ import annotations

import argparse
import json
import random
import string
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_SEED = 13
DEFAULT_PASSAGES = 520
DEFAULT_HELD_OUT = 48
# Training-only passages generated after the split. The demo model learns to copy answers out
# of passages it has never seen only when values do not repeat enough to be memorised.
DEFAULT_EXTRA_TRAIN = 3300

# ---------------------------------------------------------------------------------------------
# Slot values
# ---------------------------------------------------------------------------------------------

FIRST_NAMES = (
    "Amelia", "Bruno", "Carmen", "Dmitri", "Elena", "Farah", "Gavin", "Hana", "Isaac", "Jonas",
    "Keiko", "Liam", "Marta", "Nadia", "Omar", "Priya", "Quentin", "Rosa", "Samuel", "Tessa",
    "Umar", "Vera", "Wesley", "Ximena", "Yusuf", "Zara", "Adrian", "Beatrice", "Caleb", "Daria",
)
LAST_NAMES = (
    "Abernathy", "Brennan", "Castillo", "Delgado", "Eriksen", "Fontaine", "Gallagher", "Holloway",
    "Iverson", "Jablonski", "Kowalczyk", "Lindqvist", "Moreau", "Nakamura", "Okafor", "Petrova",
    "Quinlan", "Rasmussen", "Santoro", "Thornbury", "Underwood", "Valdez", "Whitlock", "Yamada",
    "Zielinski", "Ashworth", "Bellamy", "Carrington", "Drummond", "Ellison",
)
COMPANY_HEADS = (
    "Harbor", "Northwind", "Bluestone", "Cedar", "Silverline", "Redwood", "Granite", "Meridian",
    "Summit", "Lakeside", "Ironbridge", "Brightwater", "Oakmont", "Pinecrest", "Westfield",
    "Copperleaf", "Evergreen", "Stonegate", "Clearview", "Riverbend",
)
COMPANY_TAILS = (
    "Logistics", "Analytics", "Holdings", "Properties", "Health", "Systems", "Foods", "Energy",
    "Realty", "Software", "Manufacturing", "Networks", "Capital", "Labs", "Freight",
)
COMPANY_SUFFIXES = ("LLC", "Inc.", "Ltd.", "Group", "Partners", "Corporation")
STREETS = (
    "Maple", "Elm", "Harbor", "Willow", "Chestnut", "Birch", "Lincoln", "Orchard", "Juniper",
    "Sycamore", "Hawthorne", "Magnolia", "Prospect", "Highland", "Linden",
)
STREET_TYPES = ("Street", "Avenue", "Road", "Lane", "Boulevard", "Drive")
CITIES = (
    "Riverton", "Lakewood", "Fairview", "Brookfield", "Cedar Falls", "Millbrook", "Ashford",
    "Westport", "Granville", "Oakdale", "Kingsbury", "Dunmore",
)
STATES = (
    "Oregon", "Colorado", "Vermont", "Delaware", "Ohio", "Arizona", "Maine", "Nevada",
    "Wisconsin", "Georgia", "Virginia", "Minnesota",
)
MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
)


def person(rng: random.Random) -> str:
    """A full name such as ``Priya Holloway``."""
    return f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"


def doctor(rng: random.Random) -> str:
    """A physician such as ``Dr. Nakamura``."""
    return f"Dr. {rng.choice(LAST_NAMES)}"


def company(rng: random.Random) -> str:
    """A company name such as ``Granite Analytics LLC``."""
    return f"{rng.choice(COMPANY_HEADS)} {rng.choice(COMPANY_TAILS)} {rng.choice(COMPANY_SUFFIXES)}"


def address(rng: random.Random) -> str:
    """A street address such as ``418 Maple Avenue, Riverton``."""
    return (
        f"{rng.randint(12, 9870)} {rng.choice(STREETS)} {rng.choice(STREET_TYPES)}, "
        f"{rng.choice(CITIES)}"
    )


def date(rng: random.Random) -> str:
    """A date such as ``March 4, 2024``."""
    return f"{rng.choice(MONTHS)} {rng.randint(1, 28)}, {rng.randint(2021, 2026)}"


def money(low: int, high: int, step: int) -> Callable[[random.Random], str]:
    """A generator of dollar amounts such as ``$2,450`` between ``low`` and ``high``."""
    return lambda rng: f"${rng.randrange(low, high + 1, step):,}"


def count(values: tuple[int, ...], unit: str) -> Callable[[random.Random], str]:
    """A generator of quantities such as ``30 days`` drawn from ``values``."""
    return lambda rng: f"{rng.choice(values)} {unit}"


def pick(*values: str) -> Callable[[random.Random], str]:
    """A generator that picks one of ``values``."""
    return lambda rng: rng.choice(values)


def code(prefix: str) -> Callable[[random.Random], str]:
    """A generator of identifiers such as ``HP-48213``."""
    return lambda rng: f"{prefix}-{rng.randint(10000, 99999)}"


def blood_pressure(rng: random.Random) -> str:
    """A blood pressure reading such as ``128/82 mmHg``."""
    return f"{rng.randint(104, 168)}/{rng.randint(62, 98)} mmHg"


def temperature(rng: random.Random) -> str:
    """A body temperature such as ``37.4 C``."""
    return f"{rng.randint(361, 392) / 10:.1f} C"


def years_old(rng: random.Random) -> str:
    """An age such as ``47-year-old``."""
    return f"{rng.randint(19, 88)}-year-old"


def weekday_window(rng: random.Random) -> str:
    """A maintenance window such as ``Sundays between 1:00 a.m. and 5:00 a.m.``."""
    day = rng.choice(("Sundays", "Saturdays", "Wednesdays", "Tuesdays"))
    start = rng.randint(0, 3)
    return f"{day} between {start or 12}:00 a.m. and {start + rng.randint(2, 4)}:00 a.m."


# Slot name -> generator. A slot keeps one value per passage, so every sentence agrees.
SLOTS: dict[str, Callable[[random.Random], str]] = {
    # people and organisations
    "tenant": person,
    "landlord": company,
    "provider": company,
    "customer": company,
    "discloser": company,
    "recipient": company,
    "employer": company,
    "insurer": company,
    "policyholder": person,
    "patient": person,
    "physician": doctor,
    "address": address,
    "state": pick(*STATES),
    "effective_date": date,
    # lease
    "rent": money(900, 4800, 25),
    "deposit": money(1000, 7500, 50),
    "due_day": pick("first", "second", "third", "fifth", "tenth"),
    "term": count((6, 9, 12, 18, 24, 36), "months"),
    "start_date": date,
    "late_fee": money(25, 175, 5),
    "grace": count((3, 5, 7, 10), "days"),
    "deposit_return": count((14, 21, 30, 45), "days"),
    "utilities": pick(
        "electricity and internet", "gas and electricity", "water and trash removal",
        "all utilities except water", "internet and cable television",
    ),
    "pets": pick("allowed", "not allowed"),
    "sublet": pick("may", "may not"),
    "notice": count((30, 45, 60, 90), "days"),
    "repair_days": count((3, 5, 7, 10, 14), "days"),
    "parking": pick("one parking space", "two parking spaces", "one covered parking space"),
    # service level agreement
    "service": pick(
        "cloud hosting", "managed database", "payroll processing", "email delivery",
        "data backup", "video conferencing", "identity management",
    ),
    "uptime": pick("99.5%", "99.9%", "99.95%", "99.99%", "99.8%"),
    "p1_response": pick("15 minutes", "30 minutes", "45 minutes", "1 hour", "2 hours"),
    "p2_response": pick("4 hours", "8 hours", "12 hours", "one business day"),
    "credit": pick("5%", "10%", "15%", "20%", "25%"),
    "credit_cap": pick("30%", "40%", "50%", "100%"),
    "claim_window": count((15, 30, 45, 60), "days"),
    "maintenance_window": weekday_window,
    "maint_notice": pick("24 hours", "48 hours", "72 hours", "5 days", "7 days"),
    "support_hours": pick(
        "24 hours a day, seven days a week", "from 8:00 a.m. to 6:00 p.m. on business days",
        "from 7:00 a.m. to 9:00 p.m. every day", "from 9:00 a.m. to 5:00 p.m. on weekdays",
    ),
    "report": pick("monthly", "quarterly", "weekly"),
    "exclusion": pick(
        "customer network failures", "force majeure events", "third-party software defects",
        "misuse of the service by the customer", "emergency security patches",
    ),
    # non-disclosure agreement
    "purpose": pick(
        "evaluating a potential acquisition", "a joint marketing campaign",
        "negotiating a supply agreement", "a pilot of new analytics software",
        "exploring a research partnership",
    ),
    "conf_term": count((2, 3, 5, 7), "years"),
    "return_days": count((10, 15, 30), "days"),
    "remedy": pick("injunctive relief", "specific performance", "equitable relief"),
    # leave policy
    "vacation_days": count((10, 12, 15, 18, 20, 25), "days"),
    "carryover": count((3, 5, 8, 10), "days"),
    "sick_days": count((5, 6, 8, 10, 12), "days"),
    "parental_weeks": count((6, 8, 12, 16, 20), "weeks"),
    "vacation_notice": count((2, 3, 4), "weeks"),
    "bereavement": count((3, 4, 5), "days"),
    "eligibility": count((30, 60, 90), "days"),
    "approver": pick("their direct manager", "the HR department", "the department head"),
    "holidays": count((8, 10, 11, 12), "paid holidays"),
    "jury_duty": pick("paid", "unpaid"),
    # remote work and expenses
    "remote_days": pick("one day", "two days", "three days", "four days"),
    "core_hours": pick(
        "10:00 a.m. to 3:00 p.m.", "9:00 a.m. to 2:00 p.m.", "11:00 a.m. to 4:00 p.m.",
    ),
    "stipend": money(25, 150, 5),
    "expense_deadline": count((15, 30, 45, 60), "days"),
    "meal_limit": money(40, 120, 5),
    "approval_threshold": money(250, 5000, 250),
    "equipment": pick(
        "a laptop and a monitor", "a laptop, a headset and a docking station",
        "a laptop and an ergonomic chair",
    ),
    "travel_class": pick("economy class", "premium economy", "business class"),
    "mileage": pick("$0.58 per mile", "$0.62 per mile", "$0.65 per mile", "$0.67 per mile"),
    # insurance
    "policy_number": code("HP"),
    "premium": money(180, 940, 5),
    "deductible": money(250, 5000, 250),
    "oop_max": money(3000, 12000, 500),
    "copay": money(10, 60, 5),
    "coinsurance": pick("10%", "15%", "20%", "25%", "30%"),
    "covered_service": pick(
        "two dental cleanings per year", "one eye examination per year",
        "up to 20 physical therapy visits per year", "annual preventive checkups",
    ),
    "excluded_service": pick(
        "cosmetic procedures", "experimental treatments", "elective surgery abroad",
        "non-prescription vitamins",
    ),
    "claim_deadline": count((30, 60, 90, 180), "days"),
    "waiting_period": count((30, 60, 90), "days"),
    "preauthorization": pick("requires", "does not require"),
    # clinical notes
    "age": years_old,
    "sex": pick("woman", "man"),
    "complaint": pick(
        "a persistent dry cough", "lower back pain", "intermittent headaches", "chest tightness",
        "a sore throat and fever", "swelling in the left ankle", "shortness of breath on exertion",
        "abdominal pain after meals", "dizziness when standing",
    ),
    "symptom_duration": pick(
        "two days", "three days", "five days", "one week", "ten days", "three weeks", "two months",
    ),
    "blood_pressure": blood_pressure,
    "heart_rate": count((58, 64, 72, 78, 84, 92, 104), "beats per minute"),
    "temperature": temperature,
    "diagnosis": pick(
        "acute bronchitis", "lumbar strain", "tension-type headache", "mild asthma exacerbation",
        "streptococcal pharyngitis", "ankle sprain", "gastritis", "orthostatic hypotension",
        "community-acquired pneumonia", "urinary tract infection",
    ),
    "medication": pick(
        "amoxicillin", "ibuprofen", "naproxen", "azithromycin", "omeprazole", "prednisone",
        "cetirizine", "albuterol",
    ),
    "dose": pick("250 mg", "400 mg", "500 mg", "20 mg", "10 mg", "875 mg"),
    "frequency": pick("once daily", "twice daily", "three times daily", "every eight hours"),
    "med_duration": count((5, 7, 10, 14), "days"),
    "follow_up": pick("one week", "two weeks", "four weeks", "three months"),
    "allergy": pick("penicillin", "sulfa drugs", "latex", "codeine", "aspirin"),
    "admit_date": date,
    "length_of_stay": count((2, 3, 4, 5, 6, 8), "days"),
    "procedure": pick(
        "laparoscopic appendectomy", "knee arthroscopy", "cardiac catheterization",
        "gallbladder removal", "hip replacement",
    ),
    "complications": pick("no complications", "a mild wound infection", "transient low blood pressure"),
    "lifting_limit": count((5, 10, 15, 20), "pounds"),
    "restriction_weeks": count((2, 4, 6, 8), "weeks"),
    "diet": pick("a low-sodium diet", "a soft diet", "a diabetic diet", "a regular diet"),
    "clinic": pick(
        "the orthopedic clinic", "the cardiology clinic", "the surgical clinic",
        "the primary care clinic",
    ),
    "smoking": pick("smokes", "does not smoke"),
}

# ---------------------------------------------------------------------------------------------
# Clause templates
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Clause:
    """One sentence of a document with the facts it states.

    ``sentences``: alternative renderings with ``{slot}`` fields.
    ``questions``: ``(question, answer slot)``; the answer is the slot value, a span of the passage.
    ``yes_no``: ``(question, slot, yes_value)``; with ``yes_value`` empty the question contains
    ``{slot}`` and is true with the passage's value, false with another one; otherwise the
    question has no field and is true when the passage's value equals ``yes_value``.
    ``claims``: ``(statement, slot)``; true with the passage's value, contradicted with another.
    """

    sentences: tuple[str, ...]
    questions: tuple[tuple[str, str], ...] = ()
    yes_no: tuple[tuple[str, str, str], ...] = ()
    claims: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Kind:
    """A document type: its domain, titles, clauses in document order, and ``unstated``:
    hypotheses about things no passage of this kind mentions (always neutral)."""

    name: str
    domain: str
    titles: tuple[str, ...]
    clauses: tuple[Clause, ...]
    unstated: tuple[str, ...]


LEASE = Kind(
    "lease", "contracts", ("RESIDENTIAL LEASE AGREEMENT", "Lease Agreement"), (
        Clause(
            ('This Residential Lease Agreement is made between {landlord} (the "Landlord") and '
             '{tenant} (the "Tenant") for the premises located at {address}.',
             "{landlord}, as Landlord, agrees to lease the apartment at {address} to {tenant}, "
             "as Tenant, on the terms below."),
            (("Who is the tenant?", "tenant"), ("Who is the landlord?", "landlord"),
             ("Where are the leased premises located?", "address")),
            (("Is {tenant} the tenant under this lease?", "tenant", ""),),
            (("The premises are located at {address}.", "address"),
             ("{landlord} is the landlord.", "landlord")),
        ),
        Clause(
            ("The lease term is {term}, beginning on {start_date}.",
             "This lease runs for a term of {term} starting {start_date}."),
            (("How long is the lease term?", "term"), ("When does the lease begin?", "start_date")),
            (("Is the lease term {term}?", "term", ""),),
            (("The lease lasts {term}.", "term"), ("The lease starts on {start_date}.", "start_date")),
        ),
        Clause(
            ("The Tenant shall pay a monthly rent of {rent}, due on the {due_day} day of each month.",
             "Rent of {rent} per month is payable in advance on the {due_day} day of each month."),
            (("What is the monthly rent?", "rent"), ("On which day of the month is rent due?", "due_day")),
            (("Is the monthly rent {rent}?", "rent", ""),),
            (("The monthly rent is {rent}.", "rent"),
             ("Rent is due on the {due_day} day of the month.", "due_day")),
        ),
        Clause(
            ("If rent is not received within {grace} of the due date, a late fee of {late_fee} "
             "will be charged.",
             "A late fee of {late_fee} applies to any payment made more than {grace} after it is due."),
            (("How much is the late fee?", "late_fee"), ("How long is the grace period for rent?", "grace")),
            (("Is the late fee {late_fee}?", "late_fee", ""),),
            (("The late fee is {late_fee}.", "late_fee"), ("Tenants have a grace period of {grace}.", "grace")),
        ),
        Clause(
            ("Upon signing, the Tenant shall deposit {deposit} as security, which will be returned "
             "within {deposit_return} after the Tenant vacates.",
             "A security deposit of {deposit} is required and will be refunded within "
             "{deposit_return} of move-out, less any deductions for damage."),
            (("How much is the security deposit?", "deposit"),
             ("How soon will the deposit be returned after move-out?", "deposit_return")),
            (("Is the security deposit {deposit}?", "deposit", ""),),
            (("The security deposit is {deposit}.", "deposit"),
             ("The deposit is returned within {deposit_return} of moving out.", "deposit_return")),
        ),
        Clause(
            ("The Tenant is responsible for {utilities}; all other utilities are paid by the Landlord.",
             "The Tenant shall pay for {utilities}, and the Landlord covers the remaining utilities."),
            (("Which utilities must the tenant pay for?", "utilities"),),
            (),
            (("The tenant pays for {utilities}.", "utilities"),),
        ),
        Clause(
            ("The rent includes {parking} in the building garage.",
             "The apartment includes {parking} in the garage."),
            (("What parking is included with the rent?", "parking"),),
            (),
            (("The apartment comes with {parking}.", "parking"),),
        ),
        Clause(
            ("Pets are {pets} on the premises.", "Under this lease, pets are {pets} in the unit."),
            (),
            (("Are pets allowed in the unit?", "pets", "allowed"),),
            (("Pets are {pets} in the unit.", "pets"),),
        ),
        Clause(
            ("The Tenant {sublet} sublet the premises or assign this lease to another person.",
             "The Tenant {sublet} sublet any part of the premises during the term."),
            (),
            (("Can the tenant sublet the premises?", "sublet", "may"),),
            (("The tenant {sublet} sublet the premises.", "sublet"),),
        ),
        Clause(
            ("The Landlord shall complete non-emergency repairs within {repair_days} of a written request.",
             "Routine repairs will be made by the Landlord within {repair_days} after the Tenant reports them."),
            (("How quickly must the landlord make non-emergency repairs?", "repair_days"),),
            (("Must routine repairs be completed within {repair_days}?", "repair_days", ""),),
            (("Routine repairs are completed within {repair_days}.", "repair_days"),),
        ),
        Clause(
            ("Either party may end this lease at the close of the term by giving {notice} written notice.",
             "To terminate the lease, a party must provide at least {notice} written notice."),
            (("How much notice is required to terminate the lease?", "notice"),),
            (("Is {notice} notice required to end the lease?", "notice", ""),),
            (("Ending the lease requires {notice} notice.", "notice"),),
        ),
        Clause(
            ("This lease is governed by the laws of the State of {state}.",),
            (("Which state's law governs the lease?", "state"),),
            (("Is the lease governed by the laws of {state}?", "state", ""),),
            (("The laws of {state} govern the lease.", "state"),),
        ),
    ),
    unstated=(
        "The building has a fitness center.",
        "{tenant} works from home.",
        "The apartment is on the top floor.",
        "The landlord repaints the unit every year.",
        "{tenant} has lived in {state} for many years.",
    ),
)

SLA = Kind(
    "sla", "contracts", ("SERVICE LEVEL AGREEMENT", "Service Level Terms"), (
        Clause(
            ("This Service Level Agreement between {provider} and {customer} governs the "
             "{service} services provided from {effective_date}.",
             "{provider} provides {service} services to {customer} under this Service Level "
             "Agreement, effective {effective_date}."),
            (("Who is the service provider?", "provider"), ("Who is the customer?", "customer"),
             ("Which service does the agreement cover?", "service"),
             ("When does the agreement take effect?", "effective_date")),
            (("Is {provider} the service provider?", "provider", ""),),
            (("The agreement covers {service} services.", "service"),
             ("The agreement is effective from {effective_date}.", "effective_date")),
        ),
        Clause(
            ("{provider} commits to a monthly availability of {uptime} for the service.",
             "The service will be available at least {uptime} of the time in each calendar month."),
            (("What availability does the provider commit to?", "uptime"),),
            (("Is the committed availability {uptime}?", "uptime", ""),),
            (("The provider guarantees {uptime} availability.", "uptime"),),
        ),
        Clause(
            ("For Priority 1 incidents, the provider will respond within {p1_response} and work "
             "continuously until service is restored.",
             "Critical incidents receive a first response within {p1_response}."),
            (("How fast must the provider respond to Priority 1 incidents?", "p1_response"),),
            (("Must critical incidents receive a response within {p1_response}?", "p1_response", ""),),
            (("Critical incidents are answered within {p1_response}.", "p1_response"),),
        ),
        Clause(
            ("Priority 2 incidents will receive a response within {p2_response}.",
             "For incidents of lower severity, the response time is {p2_response}."),
            (("What is the response time for Priority 2 incidents?", "p2_response"),),
            (),
            (("Priority 2 incidents get a response within {p2_response}.", "p2_response"),),
        ),
        Clause(
            ("If availability falls below the commitment, {customer} is entitled to a service "
             "credit of {credit} of the monthly fee.",
             "Each missed availability target earns the customer a credit equal to {credit} of "
             "the monthly charges."),
            (("How large is the service credit for missed availability?", "credit"),),
            (("Is the service credit {credit} of the monthly fee?", "credit", ""),),
            (("A missed target earns a credit of {credit} of the monthly fee.", "credit"),),
        ),
        Clause(
            ("Service credits in any month shall not exceed {credit_cap} of the monthly fees.",),
            (("What is the cap on monthly service credits?", "credit_cap"),),
            (),
            (("Monthly service credits are capped at {credit_cap} of fees.", "credit_cap"),),
        ),
        Clause(
            ("The customer must request service credits within {claim_window} of the end of the "
             "affected month.",
             "Claims for service credits are only accepted if submitted within {claim_window}."),
            (("Within what time must service credits be requested?", "claim_window"),),
            (("Must credits be claimed within {claim_window}?", "claim_window", ""),),
            (("Service credits must be requested within {claim_window}.", "claim_window"),),
        ),
        Clause(
            ("Scheduled maintenance takes place on {maintenance_window} and is excluded from "
             "availability calculations.",
             "The provider performs planned maintenance on {maintenance_window}."),
            (("When is scheduled maintenance performed?", "maintenance_window"),),
            (),
            (("Planned maintenance happens on {maintenance_window}.", "maintenance_window"),),
        ),
        Clause(
            ("The provider will give at least {maint_notice} notice before any scheduled maintenance.",),
            (("How much notice is given before scheduled maintenance?", "maint_notice"),),
            (("Is {maint_notice} notice given before maintenance?", "maint_notice", ""),),
            (("Customers receive {maint_notice} notice of maintenance.", "maint_notice"),),
        ),
        Clause(
            ("Technical support is available {support_hours}.",
             "The support desk can be reached {support_hours}."),
            (("When is technical support available?", "support_hours"),),
            (),
            (("Support is available {support_hours}.", "support_hours"),),
        ),
        Clause(
            ("The provider will deliver a {report} availability report to the customer.",),
            (("How often does the provider send availability reports?", "report"),),
            (("Are availability reports delivered on a {report} basis?", "report", ""),),
            (("Availability reports are {report}.", "report"),),
        ),
        Clause(
            ("Downtime caused by {exclusion} does not count against the availability commitment.",),
            (("What kind of downtime is excluded from the commitment?", "exclusion"),),
            (),
            (("Downtime from {exclusion} is excluded from the commitment.", "exclusion"),),
        ),
    ),
    unstated=(
        "{customer} has more than one thousand employees.",
        "{provider} was founded over a decade ago.",
        "The service runs in a single data center.",
        "{customer} pays the monthly fee by wire transfer.",
    ),
)

NDA = Kind(
    "nda", "contracts", ("MUTUAL NON-DISCLOSURE AGREEMENT", "Confidentiality Agreement"), (
        Clause(
            ("This Non-Disclosure Agreement is entered into on {effective_date} by {discloser} "
             "and {recipient}.",
             "{discloser} and {recipient} sign this confidentiality agreement as of {effective_date}."),
            (("When was the agreement entered into?", "effective_date"),
             ("Which company is the disclosing party?", "discloser"),
             ("Which company receives the confidential information?", "recipient")),
            (("Is {recipient} a party to the agreement?", "recipient", ""),),
            (("The agreement was signed on {effective_date}.", "effective_date"),),
        ),
        Clause(
            ("The parties will exchange confidential information solely for the purpose of {purpose}.",
             "Confidential information may be used only for {purpose}."),
            (("For what purpose may the information be used?", "purpose"),),
            (),
            (("The information is shared for {purpose}.", "purpose"),),
        ),
        Clause(
            ("The obligations of confidentiality last for {conf_term} after the date of disclosure.",
             "The recipient must keep the information confidential for {conf_term}."),
            (("How long do the confidentiality obligations last?", "conf_term"),),
            (("Do the confidentiality obligations last {conf_term}?", "conf_term", ""),),
            (("Confidentiality lasts {conf_term}.", "conf_term"),),
        ),
        Clause(
            ("Information that is already public or independently developed is not confidential.",),
        ),
        Clause(
            ("Within {return_days} of a written request, the recipient shall return or destroy "
             "all confidential materials.",
             "All documents must be returned or destroyed within {return_days} after the "
             "disclosing party asks for them."),
            (("How soon must confidential materials be returned after a request?", "return_days"),),
            (("Must materials be returned within {return_days}?", "return_days", ""),),
            (("Materials must be returned within {return_days} of a request.", "return_days"),),
        ),
        Clause(
            ("Nothing in this agreement grants either party a license to the other party's patents "
             "or trademarks.",),
        ),
        Clause(
            ("A breach may cause irreparable harm, and the disclosing party may seek {remedy} in "
             "addition to damages.",),
            (("What remedy may the disclosing party seek besides damages?", "remedy"),),
            (),
            (("The disclosing party may seek {remedy}.", "remedy"),),
        ),
        Clause(
            ("This agreement is governed by the laws of the State of {state}.",),
            (("Which state's law governs the agreement?", "state"),),
            (("Is the agreement governed by {state} law?", "state", ""),),
            (("The agreement is governed by {state} law.", "state"),),
        ),
    ),
    unstated=(
        "{recipient} has signed similar agreements before.",
        "The parties are competitors.",
        "{discloser} is a publicly traded company.",
        "The confidential information includes customer lists.",
    ),
)

LEAVE = Kind(
    "leave_policy", "hr_insurance", ("Paid Time Off Policy", "EMPLOYEE LEAVE POLICY"), (
        Clause(
            ("This policy describes the paid leave available to employees of {employer}.",
             "{employer} provides the following leave benefits to its full-time employees."),
            (("Which company does this policy apply to?", "employer"),),
            (),
            (),
        ),
        Clause(
            ("Full-time employees receive {vacation_days} of paid vacation per calendar year.",
             "Each full-time employee accrues {vacation_days} of vacation annually."),
            (("How many vacation days do full-time employees receive each year?", "vacation_days"),),
            (("Do full-time employees receive {vacation_days} of vacation per year?", "vacation_days", ""),),
            (("Employees get {vacation_days} of paid vacation a year.", "vacation_days"),),
        ),
        Clause(
            ("Up to {carryover} of unused vacation may be carried over into the next year.",
             "Employees may carry over a maximum of {carryover} of unused vacation."),
            (("How much unused vacation can be carried over?", "carryover"),),
            (("Can employees carry over up to {carryover} of vacation?", "carryover", ""),),
            (("At most {carryover} of vacation can be carried over.", "carryover"),),
        ),
        Clause(
            ("Vacation requests must be submitted at least {vacation_notice} in advance and "
             "approved by {approver}.",
             "Employees should request vacation {vacation_notice} ahead of time from {approver}."),
            (("How far in advance must vacation be requested?", "vacation_notice"),
             ("Who approves vacation requests?", "approver")),
            (("Must vacation be requested {vacation_notice} in advance?", "vacation_notice", ""),),
            (("Vacation is approved by {approver}.", "approver"),),
        ),
        Clause(
            ("Employees are entitled to {sick_days} of paid sick leave each year.",
             "In addition to vacation, staff receive {sick_days} of sick leave annually."),
            (("How much paid sick leave do employees get?", "sick_days"),),
            (("Do employees get {sick_days} of sick leave per year?", "sick_days", ""),),
            (("Employees receive {sick_days} of sick leave a year.", "sick_days"),),
        ),
        Clause(
            ("New parents may take up to {parental_weeks} of paid parental leave.",
             "Paid parental leave of {parental_weeks} is available after the birth or adoption of a child."),
            (("How long is paid parental leave?", "parental_weeks"),),
            (("Is paid parental leave {parental_weeks} long?", "parental_weeks", ""),),
            (("Parental leave lasts up to {parental_weeks}.", "parental_weeks"),),
        ),
        Clause(
            ("Employees become eligible for paid leave after {eligibility} of continuous employment.",),
            (("When do employees become eligible for paid leave?", "eligibility"),),
            (("Do employees become eligible after {eligibility} of employment?", "eligibility", ""),),
            (("Eligibility begins after {eligibility} of employment.", "eligibility"),),
        ),
        Clause(
            ("In the event of a death in the immediate family, employees may take {bereavement} "
             "of bereavement leave.",),
            (("How much bereavement leave is provided?", "bereavement"),),
            (),
            (("Bereavement leave is {bereavement}.", "bereavement"),),
        ),
        Clause(
            ("The company observes {holidays} each year.",),
            (("How many paid holidays does the company observe?", "holidays"),),
            (),
            (("The company observes {holidays} a year.", "holidays"),),
        ),
        Clause(
            ("Time spent on jury duty is {jury_duty}.",),
            (),
            (("Is jury duty paid?", "jury_duty", "paid"),),
            (("Jury duty is {jury_duty}.", "jury_duty"),),
        ),
    ),
    unstated=(
        "Most employees use all of their vacation.",
        "{employer} has offices in several countries.",
        "Part-time employees receive the same leave as full-time employees.",
        "Sabbaticals are available after five years of service.",
    ),
)

REMOTE = Kind(
    "remote_expense_policy", "hr_insurance", ("Remote Work and Expense Policy", "Hybrid Work Guidelines"), (
        Clause(
            ("{employer} allows eligible employees to work remotely up to {remote_days} per week.",
             "Under the hybrid work program of {employer}, staff may work from home {remote_days} a week."),
            (("How many days per week may employees work remotely?", "remote_days"),),
            (("May employees work remotely {remote_days} a week?", "remote_days", ""),),
            (("Employees may work from home {remote_days} per week.", "remote_days"),),
        ),
        Clause(
            ("All employees must be reachable during core hours of {core_hours}.",
             "Remote staff are expected online during core hours, {core_hours}."),
            (("What are the core hours?", "core_hours"),),
            (("Are the core hours {core_hours}?", "core_hours", ""),),
            (("Core hours are {core_hours}.", "core_hours"),),
        ),
        Clause(
            ("The company provides {equipment} to each remote employee.",),
            (("What equipment does the company provide to remote employees?", "equipment"),),
            (),
            (("Remote employees receive {equipment}.", "equipment"),),
        ),
        Clause(
            ("Remote employees receive a monthly internet stipend of {stipend}.",),
            (("How much is the monthly internet stipend?", "stipend"),),
            (("Is the internet stipend {stipend} per month?", "stipend", ""),),
            (("The monthly internet stipend is {stipend}.", "stipend"),),
        ),
        Clause(
            ("Expense reports must be submitted within {expense_deadline} of the purchase, with "
             "itemized receipts.",
             "Employees have {expense_deadline} to file an expense report after incurring a cost."),
            (("How soon must expense reports be submitted?", "expense_deadline"),),
            (("Must expense reports be filed within {expense_deadline}?", "expense_deadline", ""),),
            (("Expense reports are due within {expense_deadline}.", "expense_deadline"),),
        ),
        Clause(
            ("Meals during business travel are reimbursed up to {meal_limit} per day.",),
            (("What is the daily limit for meal reimbursement?", "meal_limit"),),
            (("Is the daily meal limit {meal_limit}?", "meal_limit", ""),),
            (("Meals are reimbursed up to {meal_limit} a day.", "meal_limit"),),
        ),
        Clause(
            ("Any single purchase above {approval_threshold} requires written approval from a director.",),
            (("Above what amount does a purchase need director approval?", "approval_threshold"),),
            (),
            (("Purchases over {approval_threshold} need a director's approval.", "approval_threshold"),),
        ),
        Clause(
            ("Air travel is booked in {travel_class} for all flights.",
             "Employees travel in {travel_class} when flying on company business."),
            (("In which class is air travel booked?", "travel_class"),),
            (("Is air travel booked in {travel_class}?", "travel_class", ""),),
            (("Flights are booked in {travel_class}.", "travel_class"),),
        ),
        Clause(
            ("Use of a personal car for business is reimbursed at {mileage}.",),
            (("At what rate is personal car use reimbursed?", "mileage"),),
            (),
            (("Mileage is reimbursed at {mileage}.", "mileage"),),
        ),
    ),
    unstated=(
        "Most employees prefer to work from the office.",
        "{employer} plans to close its downtown office.",
        "Employees may expense gym memberships.",
        "Remote employees must live in the same state as the office.",
    ),
)

INSURANCE = Kind(
    "insurance_policy", "hr_insurance", ("Health Insurance Policy Summary", "SUMMARY OF BENEFITS"), (
        Clause(
            ("Policy {policy_number} is issued by {insurer} to {policyholder}, effective {effective_date}.",
             "{insurer} insures {policyholder} under policy number {policy_number} from {effective_date}."),
            (("What is the policy number?", "policy_number"), ("Who is the policyholder?", "policyholder"),
             ("Which company issued the policy?", "insurer"), ("When does the policy take effect?", "effective_date")),
            (("Is {policyholder} the policyholder?", "policyholder", ""),),
            (("The policy is issued by {insurer}.", "insurer"),
             ("The policy takes effect on {effective_date}.", "effective_date")),
        ),
        Clause(
            ("The monthly premium is {premium}.",
             "The policyholder pays a premium of {premium} each month."),
            (("How much is the monthly premium?", "premium"),),
            (("Is the monthly premium {premium}?", "premium", ""),),
            (("The premium costs {premium} per month.", "premium"),),
        ),
        Clause(
            ("The annual deductible is {deductible}; after it is met, the member pays {coinsurance} "
             "coinsurance.",
             "Members must meet a {deductible} deductible each year, and then pay {coinsurance} of "
             "covered costs."),
            (("What is the annual deductible?", "deductible"),
             ("What coinsurance does the member pay after the deductible?", "coinsurance")),
            (("Is the annual deductible {deductible}?", "deductible", ""),),
            (("The deductible is {deductible} per year.", "deductible"),),
        ),
        Clause(
            ("The out-of-pocket maximum is {oop_max} per year.",
             "Once a member has paid {oop_max} in a year, the plan covers all further costs."),
            (("What is the yearly out-of-pocket maximum?", "oop_max"),),
            (("Is the out-of-pocket maximum {oop_max}?", "oop_max", ""),),
            (("Yearly out-of-pocket costs are capped at {oop_max}.", "oop_max"),),
        ),
        Clause(
            ("Office visits with a primary care doctor require a copay of {copay}.",),
            (("How much is the copay for a primary care visit?", "copay"),),
            (("Is the primary care copay {copay}?", "copay", ""),),
            (("A primary care visit costs a {copay} copay.", "copay"),),
        ),
        Clause(
            ("The plan covers {covered_service} at no additional cost.",),
            (("Which service is covered at no additional cost?", "covered_service"),),
            (),
            (("The plan includes {covered_service} at no cost.", "covered_service"),),
        ),
        Clause(
            ("The policy does not cover {excluded_service}.",
             "Claims for {excluded_service} are excluded from coverage."),
            (("What is excluded from coverage?", "excluded_service"),),
            (),
            (("The policy excludes {excluded_service}.", "excluded_service"),),
        ),
        Clause(
            ("Claims must be filed within {claim_deadline} of the date of service.",),
            (("How long does a member have to file a claim?", "claim_deadline"),),
            (("Must claims be filed within {claim_deadline}?", "claim_deadline", ""),),
            (("Claims must be filed within {claim_deadline}.", "claim_deadline"),),
        ),
        Clause(
            ("Coverage for pre-existing conditions begins after a waiting period of {waiting_period}.",),
            (("How long is the waiting period for pre-existing conditions?", "waiting_period"),),
            (),
            (("Pre-existing conditions have a {waiting_period} waiting period.", "waiting_period"),),
        ),
        Clause(
            ("Inpatient hospital care {preauthorization} prior authorization from the insurer.",),
            (),
            (("Does inpatient care require prior authorization?", "preauthorization", "requires"),),
            (("Hospital stays {preauthorization} prior authorization.", "preauthorization"),),
        ),
    ),
    unstated=(
        "{policyholder} has filed a claim this year.",
        "The policy covers the policyholder's spouse.",
        "{insurer} operates in every state.",
        "The premium will increase next year.",
    ),
)

VISIT = Kind(
    "visit_note", "clinical", ("Clinic Visit Note", "OUTPATIENT PROGRESS NOTE"), (
        Clause(
            ("{patient} is a {age} {sex} seen by {physician} for {complaint} lasting {symptom_duration}.",
             "{physician} evaluated {patient}, a {age} {sex}, who reports {complaint} for {symptom_duration}."),
            (("What is the patient's chief complaint?", "complaint"), ("Who is the patient?", "patient"),
             ("How long has the patient had symptoms?", "symptom_duration"),
             ("Which physician saw the patient?", "physician")),
            (("Has the patient had symptoms for {symptom_duration}?", "symptom_duration", ""),),
            (("The patient is a {age} {sex}.", "age"),
             ("Symptoms have lasted {symptom_duration}.", "symptom_duration")),
        ),
        Clause(
            ("The patient reports an allergy to {allergy}.",
             "Allergies: {allergy}."),
            (("What is the patient allergic to?", "allergy"),),
            (("Is the patient allergic to {allergy}?", "allergy", ""),),
            (("The patient has an allergy to {allergy}.", "allergy"),),
        ),
        Clause(
            ("The patient {smoking} and drinks alcohol only occasionally.",),
            (),
            (("Does the patient smoke?", "smoking", "smokes"),),
            (("The patient {smoking}.", "smoking"),),
        ),
        Clause(
            ("Vital signs: blood pressure {blood_pressure}, heart rate {heart_rate}, temperature {temperature}.",
             "On examination, blood pressure was {blood_pressure} with a heart rate of {heart_rate} "
             "and a temperature of {temperature}."),
            (("What was the patient's blood pressure?", "blood_pressure"),
             ("What was the heart rate?", "heart_rate"), ("What was the temperature?", "temperature")),
            (("Was the blood pressure {blood_pressure}?", "blood_pressure", ""),),
            (("The heart rate was {heart_rate}.", "heart_rate"),
             ("The blood pressure was {blood_pressure}.", "blood_pressure")),
        ),
        Clause(
            ("The assessment is {diagnosis}.",
             "Findings are most consistent with {diagnosis}."),
            (("What is the diagnosis?", "diagnosis"),),
            (("Was the patient diagnosed with {diagnosis}?", "diagnosis", ""),),
            (("The patient was diagnosed with {diagnosis}.", "diagnosis"),),
        ),
        Clause(
            ("The patient was prescribed {medication} {dose} {frequency} for {med_duration}.",
             "Plan: start {medication} {dose} {frequency} for {med_duration}."),
            (("Which medication was prescribed?", "medication"), ("What dose was prescribed?", "dose"),
             ("How often should the medication be taken?", "frequency"),
             ("For how long was the medication prescribed?", "med_duration")),
            (("Was {medication} prescribed?", "medication", ""),),
            (("The medication is taken {frequency}.", "frequency"),
             ("The prescription lasts {med_duration}.", "med_duration")),
        ),
        Clause(
            ("The patient was advised to rest, stay hydrated and return if symptoms worsen.",),
        ),
        Clause(
            ("Follow-up is scheduled in {follow_up}.",
             "The patient will return for a follow-up visit in {follow_up}."),
            (("When is the follow-up visit?", "follow_up"),),
            (("Is follow-up scheduled in {follow_up}?", "follow_up", ""),),
            (("Follow-up is planned in {follow_up}.", "follow_up"),),
        ),
    ),
    unstated=(
        "The patient has a family history of heart disease.",
        "The patient works night shifts.",
        "{patient} was seen at this clinic last year.",
        "The patient exercises regularly.",
    ),
)

DISCHARGE = Kind(
    "discharge_summary", "clinical", ("Discharge Summary", "HOSPITAL DISCHARGE SUMMARY"), (
        Clause(
            ("{patient}, a {age} {sex}, was admitted on {admit_date} under the care of {physician}.",
             "{patient} ({age} {sex}) was admitted by {physician} on {admit_date}."),
            (("When was the patient admitted?", "admit_date"), ("Who is the patient?", "patient"),
             ("Who was the attending physician?", "physician")),
            (("Was the patient admitted on {admit_date}?", "admit_date", ""),),
            (("The patient was admitted on {admit_date}.", "admit_date"),),
        ),
        Clause(
            ("The patient underwent {procedure}, which was completed with {complications}.",
             "A {procedure} was performed; the postoperative course showed {complications}."),
            (("What procedure did the patient undergo?", "procedure"),
             ("Were there complications after the procedure?", "complications")),
            (("Did the patient undergo {procedure}?", "procedure", ""),),
            (("The patient had {procedure}.", "procedure"),),
        ),
        Clause(
            ("The total length of stay was {length_of_stay}.",
             "The patient was discharged home after {length_of_stay} in hospital."),
            (("How long was the hospital stay?", "length_of_stay"),),
            (("Was the hospital stay {length_of_stay}?", "length_of_stay", ""),),
            (("The stay lasted {length_of_stay}.", "length_of_stay"),),
        ),
        Clause(
            ("Discharge medications include {medication} {dose} {frequency}.",),
            (("Which medication was the patient discharged on?", "medication"),
             ("How often should the discharge medication be taken?", "frequency")),
            (("Was the patient discharged on {medication}?", "medication", ""),),
            (("The patient takes {medication} {frequency}.", "frequency"),),
        ),
        Clause(
            ("The patient should avoid lifting more than {lifting_limit} for {restriction_weeks}.",
             "Activity: no lifting over {lifting_limit} for the next {restriction_weeks}."),
            (("What is the lifting limit after discharge?", "lifting_limit"),
             ("How long does the lifting restriction last?", "restriction_weeks")),
            (("Is lifting limited to {lifting_limit}?", "lifting_limit", ""),),
            (("The patient may not lift more than {lifting_limit}.", "lifting_limit"),),
        ),
        Clause(
            ("The patient should follow {diet} at home.",),
            (("What diet should the patient follow?", "diet"),),
            (),
            (("The patient is on {diet}.", "diet"),),
        ),
        Clause(
            ("A follow-up appointment is arranged at {clinic} in {follow_up}.",
             "The patient will be seen at {clinic} in {follow_up}."),
            (("Where is the follow-up appointment?", "clinic"), ("When is the follow-up appointment?", "follow_up")),
            (("Is the follow-up at {clinic}?", "clinic", ""),),
            (("Follow-up is at {clinic}.", "clinic"),),
        ),
        Clause(
            ("The patient was instructed to seek care for fever, increasing pain or bleeding.",),
        ),
    ),
    unstated=(
        "The patient lives alone.",
        "{patient} was transferred from another hospital.",
        "The patient will need home nursing care.",
        "The patient has a history of diabetes.",
    ),
)

KINDS: tuple[Kind, ...] = (LEASE, SLA, NDA, LEAVE, REMOTE, INSURANCE, VISIT, DISCHARGE)

# ---------------------------------------------------------------------------------------------
# Passages
# ---------------------------------------------------------------------------------------------

FIELDS = string.Formatter()
MIN_WORDS, MAX_WORDS = 60, 180


def template_slots(template: str) -> list[str]:
    """The ``{slot}`` names used by a template, in order."""
    return [name for _, name, _, _ in FIELDS.parse(template) if name]


def other_value(slot: str, value: str, rng: random.Random) -> str:
    """A value of ``slot`` different from ``value`` (for false questions and contradictions)."""
    for _ in range(100):
        candidate = SLOTS[slot](rng)
        if candidate != value:
            return candidate
    raise ValueError(f"slot {slot!r} has no value other than {value!r}")


@dataclass
class Passage:
    """A generated passage with the facts needed to build questions about it."""

    id: str
    kind: Kind
    text: str
    sentences: list[str]
    values: dict[str, str]
    present: list[Clause]
    absent: list[Clause]

    @property
    def domain(self) -> str:
        """The passage's domain (contracts, hr_insurance or clinical)."""
        return self.kind.domain

    def record(self) -> dict[str, str]:
        """The JSONL record written to disk."""
        return {"id": self.id, "domain": self.domain, "text": self.text}

    def fill(self, template: str, slot: str = "", value: str = "") -> str:
        """Render a template with the passage's values, optionally overriding one slot."""
        values = dict(self.values)
        if slot:
            values[slot] = value
        return render(template, values)

    def extractive(self, rng: random.Random) -> tuple[str, str]:
        """A question whose answer is an exact span of the passage: ``(question, answer)``."""
        question, slot = rng.choice([q for c in self.present for q in c.questions])
        return self.fill(question), self.values[slot]

    def yes_no(self, rng: random.Random, answer_yes: bool) -> tuple[str, str]:
        """A yes-no question the passage answers: ``(question, "Yes" | "No")``."""
        question, slot, yes_value = rng.choice([q for c in self.present for q in c.yes_no])
        true_value = self.values[slot]
        if yes_value:  # the question is fixed; the passage's value decides the answer
            return self.fill(question), "Yes" if true_value == yes_value else "No"
        value = true_value if answer_yes else other_value(slot, true_value, rng)
        return self.fill(question, slot, value), "Yes" if answer_yes else "No"

    def completion(self, rng: random.Random) -> tuple[str, str]:
        """A sentence of the passage cut in two at a word boundary: ``(beginning, ending)``."""
        sentence = rng.choice([s for s in self.sentences if len(s.split()) >= 8] or self.sentences)
        words = sentence.split(" ")
        cut = rng.randint(max(2, len(words) * 3 // 10), max(2, len(words) * 7 // 10))
        return " ".join(words[:cut]), " ".join(words[cut:])

    def summary(self) -> str:
        """An extractive summary: the opening sentence, which names the parties or the patient."""
        return self.sentences[0]

    def claim(self, rng: random.Random, label: str) -> tuple[str, str]:
        """A hypothesis with ``label`` (entailment, contradiction or neutral): ``(hypothesis, label)``."""
        if label == "neutral":
            # Claims of clauses the passage lacks, unless their fact is stated by another clause.
            stated = {s for c in self.present for t in c.sentences for s in template_slots(t)}
            absent = [c for clause in self.absent for c in clause.claims if c[1] not in stated]
            statement, slot = rng.choice(absent + [(u, "") for u in self.kind.unstated])
            return self.fill(statement, slot, SLOTS[slot](rng) if slot else ""), label
        statement, slot = rng.choice([c for clause in self.present for c in clause.claims])
        if label == "entailment":
            return self.fill(statement), label
        return self.fill(statement, slot, other_value(slot, self.values[slot], rng)), label


def render(template: str, values: dict[str, str]) -> str:
    """Fill a template and tidy it: capital first letter, no doubled period after "a.m." or "Inc."."""
    text = template.format(**values).replace("..", ".")
    return text[:1].upper() + text[1:]


def make_passage(rng: random.Random, kind: Kind, passage_id: str) -> Passage:
    """Compose one passage of ``kind`` of roughly 60-180 words."""
    values = {name: generator(rng) for name, generator in SLOTS.items()}
    target_words = rng.randint(MIN_WORDS, MAX_WORDS)
    # The opening clause introduces the parties; the rest are picked at random, kept in order.
    order = [0] + rng.sample(range(1, len(kind.clauses)), len(kind.clauses) - 1)
    chosen: dict[int, str] = {}
    words = 0
    for index in order:
        sentence = render(rng.choice(kind.clauses[index].sentences), values)
        sentence_words = len(sentence.split())
        if chosen and words + sentence_words > MAX_WORDS:
            continue
        chosen[index] = sentence
        words += sentence_words
        if words >= target_words:
            break
    sentences = [chosen[i] for i in sorted(chosen)]
    body = " ".join(sentences)
    if rng.random() < 0.4:
        body = rng.choice(kind.titles) + "\n\n" + body
    return Passage(
        id=passage_id,
        kind=kind,
        text=body,
        sentences=sentences,
        values=values,
        present=[kind.clauses[i] for i in sorted(chosen)],
        absent=[c for i, c in enumerate(kind.clauses) if i not in chosen],
    )


def check_passage(passage: Passage) -> None:
    """Fail unless every value asked about in the passage's clauses appears verbatim in its text.

    Questions are only asked about the clauses a passage contains, so a sentence variant that
    omits (or re-capitalizes) a value would yield an "extractive" answer that is not a span.
    """
    for clause in passage.present:
        asked = {slot for _, slot in clause.questions}
        asked |= {slot for _, slot, _ in clause.yes_no}
        asked |= {slot for _, slot in clause.claims}
        missing = sorted(slot for slot in asked if passage.values[slot] not in passage.text)
        if missing:
            raise ValueError(f"{passage.id}: {missing} not stated verbatim in {passage.text!r}")
    for facts in ("questions", "yes_no", "claims"):
        if not any(getattr(clause, facts) for clause in passage.present):
            raise ValueError(f"{passage.id}: no clause with {facts}")


def build_corpus(
    seed: int = DEFAULT_SEED,
    passages: int = DEFAULT_PASSAGES,
    held_out: int = DEFAULT_HELD_OUT,
    extra_train: int = DEFAULT_EXTRA_TRAIN,
) -> tuple[list[Passage], list[Passage]]:
    """Generate ``passages`` passages and split them into ``(train, held_out)``, deterministically,
    then add ``extra_train`` more to the training side (generated after the split, so that their
    number does not change the held-out set)."""
    rng = random.Random(seed)

    def generate(numbers: range) -> list[Passage]:
        generated = []
        for number in numbers:
            kind = KINDS[number % len(KINDS)]
            passage = make_passage(rng, kind, f"{kind.domain}-{number:04d}")
            check_passage(passage)
            generated.append(passage)
        return generated

    split = generate(range(passages))
    rng.shuffle(split)
    return split[held_out:] + generate(range(passages, passages + extra_train)), split[:held_out]


def write_jsonl(path: Path, passages: list[Passage]) -> None:
    """Write passages as JSON lines (id, domain, text)."""
    with path.open("w", encoding="utf-8") as handle:
        for passage in passages:
            handle.write(json.dumps(passage.record(), ensure_ascii=False) + "\n")


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--passages", type=int, default=DEFAULT_PASSAGES)
    parser.add_argument("--held-out", type=int, default=DEFAULT_HELD_OUT)
    parser.add_argument("--extra-train", type=int, default=DEFAULT_EXTRA_TRAIN)
    parser.add_argument("--output-dir", type=Path, default=HERE)
    args = parser.parse_args()
    train, held_out = build_corpus(args.seed, args.passages, args.held_out, args.extra_train)
    write_jsonl(args.output_dir / "demo_train.jsonl", train)
    write_jsonl(args.output_dir / "corpus.jsonl", held_out)
    lengths = sorted(len(p.text.split()) for p in train + held_out)
    print(
        f"wrote {len(train)} training and {len(held_out)} held-out passages to {args.output_dir} "
        f"(words per passage: min {lengths[0]}, median {lengths[len(lengths) // 2]}, max {lengths[-1]})"
    )


if __name__ == "__main__":
    main()

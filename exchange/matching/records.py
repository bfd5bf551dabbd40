"""Victim records a holder loads and the queries an officer asks, validated at the edge.

A holder loads its records from CSV (`ref,given_name,family_name,sex,date_of_birth,
nationality,place_of_birth`); a querier types or batches the same columns without
`ref`. Both are validated here, once, so that token generation never meets a value it
cannot interpret and a bad file is refused with the line and column to fix instead of
silently matching nothing. Everything is pure: rows in, typed objects or an
`InvalidFieldError` out.

Dates of birth are often known only in part ("born in 1998", "March 2001"), so a
`PartialDate` keeps month and day optional; the token layer decides how much a
partial date can vouch for.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from exchange.errors import InvalidFieldError, MalformedError

RECORD_COLUMNS = (
    "ref",
    "given_name",
    "family_name",
    "sex",
    "date_of_birth",
    "nationality",
    "place_of_birth",
)
QUERY_COLUMNS = RECORD_COLUMNS[1:]

MIN_YEAR = 1900
MAX_YEAR = 2100
MAX_REF_CHARS = 128
MAX_TEXT_CHARS = 200
SEXES = frozenset({"F", "M", "X"})

# ISO 3166-1 alpha-2 -> alpha-3, plus the user-assigned codes officers meet in travel
# documents: XK/XKX (Kosovo) and ICAO 9303's XXA/XXB/XXC/XXX (stateless, refugee,
# other refugee, unspecified), which matter for trafficking victims.
_ISO3166_TABLE = (
    "AD AND AE ARE AF AFG AG ATG AI AIA AL ALB AM ARM AO AGO AQ ATA AR ARG AS ASM AT AUT "
    "AU AUS AW ABW AX ALA AZ AZE BA BIH BB BRB BD BGD BE BEL BF BFA BG BGR BH BHR BI BDI "
    "BJ BEN BL BLM BM BMU BN BRN BO BOL BQ BES BR BRA BS BHS BT BTN BV BVT BW BWA BY BLR "
    "BZ BLZ CA CAN CC CCK CD COD CF CAF CG COG CH CHE CI CIV CK COK CL CHL CM CMR CN CHN "
    "CO COL CR CRI CU CUB CV CPV CW CUW CX CXR CY CYP CZ CZE DE DEU DJ DJI DK DNK DM DMA "
    "DO DOM DZ DZA EC ECU EE EST EG EGY EH ESH ER ERI ES ESP ET ETH FI FIN FJ FJI FK FLK "
    "FM FSM FO FRO FR FRA GA GAB GB GBR GD GRD GE GEO GF GUF GG GGY GH GHA GI GIB GL GRL "
    "GM GMB GN GIN GP GLP GQ GNQ GR GRC GS SGS GT GTM GU GUM GW GNB GY GUY HK HKG HM HMD "
    "HN HND HR HRV HT HTI HU HUN ID IDN IE IRL IL ISR IM IMN IN IND IO IOT IQ IRQ IR IRN "
    "IS ISL IT ITA JE JEY JM JAM JO JOR JP JPN KE KEN KG KGZ KH KHM KI KIR KM COM KN KNA "
    "KP PRK KR KOR KW KWT KY CYM KZ KAZ LA LAO LB LBN LC LCA LI LIE LK LKA LR LBR LS LSO "
    "LT LTU LU LUX LV LVA LY LBY MA MAR MC MCO MD MDA ME MNE MF MAF MG MDG MH MHL MK MKD "
    "ML MLI MM MMR MN MNG MO MAC MP MNP MQ MTQ MR MRT MS MSR MT MLT MU MUS MV MDV MW MWI "
    "MX MEX MY MYS MZ MOZ NA NAM NC NCL NE NER NF NFK NG NGA NI NIC NL NLD NO NOR NP NPL "
    "NR NRU NU NIU NZ NZL OM OMN PA PAN PE PER PF PYF PG PNG PH PHL PK PAK PL POL PM SPM "
    "PN PCN PR PRI PS PSE PT PRT PW PLW PY PRY QA QAT RE REU RO ROU RS SRB RU RUS RW RWA "
    "SA SAU SB SLB SC SYC SD SDN SE SWE SG SGP SH SHN SI SVN SJ SJM SK SVK SL SLE SM SMR "
    "SN SEN SO SOM SR SUR SS SSD ST STP SV SLV SX SXM SY SYR SZ SWZ TC TCA TD TCD TF ATF "
    "TG TGO TH THA TJ TJK TK TKL TL TLS TM TKM TN TUN TO TON TR TUR TT TTO TV TUV TW TWN "
    "TZ TZA UA UKR UG UGA UM UMI US USA UY URY UZ UZB VA VAT VC VCT VE VEN VG VGB VI VIR "
    "VN VNM VU VUT WF WLF WS WSM YE YEM YT MYT ZA ZAF ZM ZMB ZW ZWE XK XKX"
)
_ISO3166 = _ISO3166_TABLE.split()
ALPHA2_TO_ALPHA3: Mapping[str, str] = dict(zip(_ISO3166[::2], _ISO3166[1::2], strict=True))
ALPHA3 = frozenset(ALPHA2_TO_ALPHA3.values()) | {"XXA", "XXB", "XXC", "XXX"}

_DATE_RE = re.compile(r"(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?")


class _ColumnError(ValueError):
    """A value that breaks a column's rule; `parse_*_row` adds the line."""

    def __init__(self, column: str, problem: str) -> None:
        super().__init__(problem)
        self.column = column
        self.problem = problem


@dataclass(frozen=True, order=True)
class PartialDate:
    """A date of which the month, or the month and day, may be unknown."""

    year: int
    month: int | None = None
    day: int | None = None

    def __post_init__(self) -> None:
        if not MIN_YEAR <= self.year <= MAX_YEAR:
            raise InvalidFieldError(f"Year {self.year} is outside {MIN_YEAR} to {MAX_YEAR}.")
        if self.month is None and self.day is not None:
            raise InvalidFieldError("A date with a day must also have a month.")
        if self.month is not None and not 1 <= self.month <= 12:
            raise InvalidFieldError(f"Month {self.month} is not 1 to 12.")
        if self.month is not None and self.day is not None:
            last = calendar.monthrange(self.year, self.month)[1]
            if not 1 <= self.day <= last:
                raise InvalidFieldError(
                    f"Day {self.day} does not exist in {self.year:04d}-{self.month:02d}."
                )

    @classmethod
    def parse(cls, text: str) -> PartialDate | None:
        """Parse "YYYY-MM-DD", "YYYY-MM" or "YYYY"; an empty string means unknown (None)."""
        text = text.strip()
        if not text:
            return None
        found = _DATE_RE.fullmatch(text)
        if found is None:
            raise InvalidFieldError(f"Date {text!r} is not YYYY-MM-DD, YYYY-MM or YYYY.")
        year, month, day = found.groups()
        return cls(int(year), _opt_int(month), _opt_int(day))

    def __str__(self) -> str:
        if self.month is None:
            return f"{self.year:04d}"
        if self.day is None:
            return f"{self.year:04d}-{self.month:02d}"
        return f"{self.year:04d}-{self.month:02d}-{self.day:02d}"


def _opt_int(text: str | None) -> int | None:
    return None if text is None else int(text)


@dataclass(frozen=True)
class VictimQuery:
    """What an officer knows of a possible victim; every field but one name may be empty."""

    given_name: str = ""
    family_name: str = ""
    sex: str = ""
    date_of_birth: PartialDate | None = None
    nationality: str = ""
    place_of_birth: str = ""

    def __post_init__(self) -> None:
        _raise_for_column(lambda q: _check_identity(vars(q)), self)


@dataclass(frozen=True)
class VictimRecord:
    """One record a holder keeps; `ref` is its own reference and never leaves its node."""

    ref: str
    given_name: str = ""
    family_name: str = ""
    sex: str = ""
    date_of_birth: PartialDate | None = None
    nationality: str = ""
    place_of_birth: str = ""

    def __post_init__(self) -> None:
        _raise_for_column(lambda r: _check_ref(r.ref), self)
        _raise_for_column(lambda r: _check_identity(vars(r)), self)

    def query(self) -> VictimQuery:
        """The same person as a query: what the record looks like to the token layer."""
        return VictimQuery(
            self.given_name,
            self.family_name,
            self.sex,
            self.date_of_birth,
            self.nationality,
            self.place_of_birth,
        )


def _raise_for_column(check: Callable[[Any], None], value: object) -> None:
    try:
        check(value)
    except _ColumnError as problem:
        raise InvalidFieldError(f"Column {problem.column}: {problem.problem}") from None


def _check_ref(ref: str) -> None:
    if not ref.strip():
        raise _ColumnError("ref", "a record needs a non-empty reference.")
    if ref != ref.strip() or len(ref) > MAX_REF_CHARS or not ref.isprintable():
        raise _ColumnError(
            "ref",
            f"the reference must be 1 to {MAX_REF_CHARS} printable characters "
            "without surrounding spaces.",
        )


def _check_identity(person: Mapping[str, Any]) -> None:
    """The rules every identity obeys, over its fields by column name."""
    for column in ("given_name", "family_name", "place_of_birth"):
        _check_text(column, person[column])
    if not person["given_name"].strip() and not person["family_name"].strip():
        raise _ColumnError("family_name", "a given name or a family name is required.")
    if person["sex"] not in SEXES and person["sex"] != "":
        raise _ColumnError("sex", f"{person['sex']!r} is not F, M, X or empty.")
    if person["nationality"] and person["nationality"] not in ALPHA3:
        raise _ColumnError(
            "nationality", f"{person['nationality']!r} is not an ISO 3166 alpha-3 code."
        )
    date_of_birth = person["date_of_birth"]
    if date_of_birth is not None and not isinstance(date_of_birth, PartialDate):
        raise _ColumnError("date_of_birth", "the date of birth must be a PartialDate or None.")


def _check_text(column: str, value: str) -> None:
    if len(value) > MAX_TEXT_CHARS:
        raise _ColumnError(column, f"the value is longer than {MAX_TEXT_CHARS} characters.")
    if any(not ch.isprintable() for ch in value):
        raise _ColumnError(column, "the value contains control characters.")


def normalise_sex(value: str) -> str:
    """Upper-case F, M or X; empty stays empty. Raises on anything else."""
    sex = value.strip().upper()
    if sex not in SEXES and sex != "":
        raise _ColumnError("sex", f"{value!r} is not F, M, X or empty.")
    return sex


def normalise_nationality(value: str) -> str:
    """ISO 3166 alpha-3 from an alpha-2 or alpha-3 code in any case; empty stays empty."""
    code = value.strip().upper()
    if not code:
        return ""
    if len(code) == 2 and code in ALPHA2_TO_ALPHA3:
        return ALPHA2_TO_ALPHA3[code]
    if len(code) == 3 and code in ALPHA3:
        return code
    raise _ColumnError(
        "nationality", f"{value!r} is not an ISO 3166 alpha-2 or alpha-3 country code."
    )


def _date(value: str) -> PartialDate | None:
    try:
        return PartialDate.parse(value)
    except InvalidFieldError as err:
        raise _ColumnError("date_of_birth", err.message) from None


def _fields(row: Mapping[str, str | None], columns: tuple[str, ...], line: int) -> dict[str, str]:
    unknown = sorted(str(k) for k in row if k not in RECORD_COLUMNS)
    if unknown:
        raise MalformedError(f"Line {line}: column {unknown[0]!r} is not a known column.")
    missing = [c for c in columns if c not in row]
    if missing:
        raise MalformedError(f"Line {line}: column {missing[0]} is missing.")
    return {c: (row[c] or "") for c in columns}


def _query_from(values: Mapping[str, str]) -> VictimQuery:
    """Normalise and check one row's identity columns, raising `_ColumnError`."""
    sex = normalise_sex(values["sex"])
    nationality = normalise_nationality(values["nationality"])
    date_of_birth = _date(values["date_of_birth"])
    fields: dict[str, Any] = {
        "given_name": values["given_name"].strip(),
        "family_name": values["family_name"].strip(),
        "sex": sex,
        "date_of_birth": date_of_birth,
        "nationality": nationality,
        "place_of_birth": values["place_of_birth"].strip(),
    }
    _check_identity(fields)
    return VictimQuery(**fields)


def parse_csv_row(row: Mapping[str, str | None], line: int) -> VictimRecord:
    """One CSV row (as `csv.DictReader` yields it) as a record; errors name line and column.

    Values are trimmed, sex upper-cased and nationality stored as alpha-3, so the same
    person loaded twice from differently written files gives the same record.
    """
    values = _fields(row, RECORD_COLUMNS, line)
    try:
        _check_ref(values["ref"])
        query = _query_from(values)
    except _ColumnError as problem:
        raise InvalidFieldError(
            f"Line {line}, column {problem.column}: {problem.problem}"
        ) from None
    return VictimRecord(values["ref"], **vars(query))


def parse_query_row(row: Mapping[str, str | None], line: int) -> VictimQuery:
    """One row of a batch query file; a `ref` column, if present, is the querier's own label."""
    values = _fields(row, QUERY_COLUMNS, line)
    try:
        return _query_from(values)
    except _ColumnError as problem:
        raise InvalidFieldError(
            f"Line {line}, column {problem.column}: {problem.problem}"
        ) from None

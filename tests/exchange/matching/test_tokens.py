"""Match tokens and the normalisation under them: the same person written differently
shares tokens, other people do not, and every token is a composite that carries a date."""

from __future__ import annotations

import pytest

from exchange.matching.normalise import name_parts, phonetic_fold, skeleton, to_ascii, words
from exchange.matching.records import PartialDate, VictimQuery, VictimRecord
from exchange.matching.score import Band, band
from exchange.matching.tokens import MAX_TOKENS, TOKEN_DOMAIN, Token, code, record_tokens


def held(given: str, family: str, dob: str, sex: str = "") -> VictimRecord:
    return VictimRecord("R1", given, family, sex, PartialDate.parse(dob))


def asked(given: str, family: str, dob: str, sex: str = "") -> VictimQuery:
    return VictimQuery(given, family, sex, PartialDate.parse(dob))


def matched(record: VictimRecord, query: VictimQuery) -> set[str]:
    """The query's token kinds whose values the record publishes (what the querier sees)."""
    published = {t.value for t in record_tokens(record)}
    return {t.kind for t in record_tokens(query) if t.value in published}


# --- normalisation -------------------------------------------------------------------------


def test_any_script_becomes_ascii_words() -> None:
    assert words("Олена Шевченко") == ["olena", "shevchenko"]
    assert words("Nguyễn Thị Ánh") == ["nguyen", "thi", "anh"]
    assert words("O'Brien-Mel'nik") == ["obrien", "melnik"]
    assert to_ascii("王小明").split() == ["Wang", "Xiao", "Ming"]  # one word per syllable


def test_arabic_vowel_letters_and_the_article() -> None:
    assert words("يوسف") == ["yusf"]
    assert words("العمراني") == ["al", "amrani"]  # ain is read as the vowel Latin writes
    assert name_parts("العمراني") == ["amrani"]
    assert words("عبدالله") == ["abdallah"]  # a final heh as Latin "-ah"


@pytest.mark.parametrize(
    ("native", "latin"),
    [
        ("عمر", "Omar"),
        ("حسن", "Hassan"),
        ("عثمان", "Uthman"),
        ("ليلى", "Layla"),
        ("الحسن", "Hassan"),
    ],
)
def test_abjad_spellings_share_the_code_of_their_latin_spellings(native: str, latin: str) -> None:
    assert code(name_parts(native)[-1]) == code(name_parts(latin)[0])


def test_a_joined_arabic_article_meets_the_separate_one() -> None:
    record = held("Mahmoud", "Al-Hassan", "1990-01-02")
    assert band(matched(record, asked("Mahmoud", "Alhassan", "1990-01-02"))) is Band.STRONG


def test_particles_and_initials_are_dropped_but_not_a_whole_name() -> None:
    assert name_parts("María de la Cruz") == ["maria", "cruz"]
    assert name_parts("Văn J. Anh") == ["anh"]
    assert name_parts("Da") == ["da"]


@pytest.mark.parametrize(
    ("variants"),
    [
        ("Mohamed", "Muhammad", "Mohammed", "محمد"),
        ("Oleksandr", "Aleksandr", "Olexandr"),
        ("Olha", "Olga", "Ольга"),
        ("Khalid", "Khaled", "Halid"),
        ("Shevchenko", "Shevtchenko", "Ševčenko", "Шевченко"),
        ("Hoxha", "Hodža", "Hodja"),
    ],
)
def test_transliteration_variants_share_a_code(variants: tuple[str, ...]) -> None:
    codes = {code(name_parts(v)[0]) for v in variants}
    assert len(codes) == 1, codes


def test_distinct_names_keep_distinct_codes() -> None:
    names = ["Ivan", "Olena", "Andrei", "Maria", "Yan", "Yun", "Li", "Lu", "Popescu", "Pop"]
    assert len({code(n.lower()) for n in names}) == len(names)


def test_fold_and_skeleton() -> None:
    assert phonetic_fold("tkatchenko") == phonetic_fold("tkachenko")
    assert phonetic_fold("fatimah") == "fatima"
    assert skeleton("mohamed") == skeleton("mhmd") == "mhmd"


# --- tokens --------------------------------------------------------------------------------


def test_the_same_person_in_another_script_is_a_strong_match() -> None:
    record = held("Олена", "Шевченко", "2001-11-03", "F")
    assert band(matched(record, asked("Olena", "Shevchenko", "2001-11-03"))) is Band.STRONG


def test_swapped_fields_give_the_same_tokens_but_the_given_name_ones() -> None:
    one = record_tokens(asked("Ion", "Popescu", "1990-05-17", "M"))
    two = record_tokens(asked("Popescu", "Ion", "1990-05-17", "M"))
    field_named = {"G.d", "D.d"}
    assert {t.value for t in one if t.kind not in field_named} == {
        t.value for t in two if t.kind not in field_named
    }
    assert {t.value for t in one if t.kind == "G.d"} != {t.value for t in two if t.kind == "G.d"}


def test_a_day_month_swap_meets_on_the_whole_name_and_a_year_off_is_one_window() -> None:
    record = held("Mihai", "Popa", "1990-03-11")
    swapped = matched(record, asked("Mihai", "Popa", "1990-11-03"))
    assert swapped == {"N.t"}  # the slip key takes day and month unordered
    assert band(swapped) is Band.POSSIBLE
    assert not matched(record, asked("Mihail", "Popa", "1990-11-03"))  # a swap and a variant
    off = matched(record, asked("Mihai", "Popa", "1991-03-11"))
    assert "P.w0" in off
    assert not {"P.w1", "G.d"} & off
    assert band(off) is Band.POSSIBLE
    # A year off and a swap at once: a namesake born a year apart, far more often than not.
    assert not matched(record, asked("Mihai", "Popa", "1991-11-03"))
    assert not matched(record, asked("Mihai", "Popa", "1992-03-11"))


def test_a_typo_still_meets_through_prefixes_and_field_bands() -> None:
    record = held("Gheorghe", "Marin", "2005-07-04", "M")
    kinds = matched(record, asked("Gheorghe", "Majin", "2005-07-04", "M"))
    assert "P.w0" not in kinds
    assert {"E2.w0", "E2.w1", "X.w0", "X.w1"} <= kinds
    # A year off, the whole given name no longer counts: the prefix needs the sex.
    off = matched(record, asked("Gheorghe", "Majin", "2006-07-04", "M"))
    assert band(off) is Band.POSSIBLE
    assert band(off - {"X.w0", "X.w1"}) is None


@pytest.mark.parametrize("typo", ["Lunku", "Lungo", "Lugu", "Lunngu", "Lugnu"])
def test_a_one_edit_typo_in_a_five_letter_family_name_with_the_rest_exact_hits(
    typo: str,
) -> None:
    record = held("Elena", "Lungu", "1990-03-04")
    kinds = matched(record, asked("Elena", typo, "1990-03-04"))
    assert "G.d" in kinds
    assert band(kinds) is not None  # no sex on either side


@pytest.mark.parametrize("typo", ["Omra", "Omr", "Omarr", "Oman", "Okmar"])
def test_a_one_edit_typo_in_a_short_given_name_with_the_rest_exact_hits(typo: str) -> None:
    record = held("Omar", "Haddad", "1987-06-21")
    kinds = matched(record, asked(typo, "Haddad", "1987-06-21"))
    assert "D.d" in kinds
    assert band(kinds) is not None
    # Two edits are not one: the family name alone on the date is what twins share.
    assert band(matched(record, asked("Olam", "Haddad", "1987-06-21"))) is None


@pytest.mark.parametrize("dob", ["1990-07-21", "1994-03-04", "1993-04-03", "1990-03-05"])
def test_a_namesake_born_another_day_does_not_hit(dob: str) -> None:
    record = held("Elena", "Lungu", dob, "F")
    assert band(matched(record, asked("Elena", "Lungu", "1990-03-04", "F"))) is None
    assert band(matched(record, asked("Elena", "Lunku", "1990-03-04", "F"))) is None


@pytest.mark.parametrize("dob", ["1970-03-04", "1980-04-03", "1950-03-04"])
def test_a_slip_of_the_years_tens_digit_meets_only_with_the_whole_name(dob: str) -> None:
    record = held("Elena Maria", "Lungu", dob, "F")
    kinds = matched(record, asked("Lungu", "Maria Elena", "1990-03-04"))  # fields swapped
    assert kinds == {"N.t"}
    assert band(kinds) is Band.POSSIBLE
    # One letter off, or the unit digit instead, and it is anybody's namesake.
    assert band(matched(record, asked("Elena Maria", "Lunku", "1990-03-04"))) is None
    assert band(matched(record, asked("Elena", "Lungu", "1990-03-04"))) is None
    assert (
        band(
            matched(
                held("Elena Maria", "Lungu", "1993-03-04"),
                asked("Elena Maria", "Lungu", "1990-03-04"),
            )
        )
        is None
    )


def test_a_family_name_replaced_keeps_a_two_part_given_name_on_the_exact_date() -> None:
    record = held("Valentina Sofía", "Moreno", "1995-10-02", "F")
    query = asked("Valentina Sofía", "Castillo", "1995-10-02")
    assert "Gm.d" in matched(record, query)
    assert band(matched(record, query)) is Band.POSSIBLE
    assert band(matched(record, asked("Valentina Sofía", "Castillo", "1996-10-02"))) is None
    assert band(matched(record, asked("Valentina Sofía", "Castillo", "1995-02-10"))) is None
    # One given name on one day is what namesakes share: alone it is no hit.
    one = held("Valentina", "Moreno", "1995-10-02", "F")
    assert matched(one, asked("Valentina", "Castillo", "1995-10-02")) >= {"G.d"}
    assert band(matched(one, asked("Valentina", "Castillo", "1995-10-02"))) is None
    # ... unless the other field's beginning agrees as well.
    assert band(matched(one, asked("Valentina", "Morneo", "1995-10-02"))) is Band.STRONG


@pytest.mark.parametrize("field", ["given", "family"])
def test_a_single_name_person_matches_on_that_name_and_the_date(field: str) -> None:
    name = {"given_name": "Somsak"} if field == "given" else {"family_name": "Somsak"}
    record = VictimRecord("R1", sex="M", date_of_birth=PartialDate.parse("1980-04-26"), **name)
    for query in (
        asked("Somsak", "", "1980-04-26", "M"),
        asked("", "Somsak", "1980-04-26"),
        asked("Somsak", "Saetang", "1980-04-26"),  # the querier knows a family name too
    ):
        assert band(matched(record, query)) is Band.POSSIBLE, query
    # A two-field record meets a one-name query on its given name when it has two parts
    # or more; one given name alone on one day is anybody's born that day.
    assert (
        band(matched(held("Somsak", "Saetang", "1980-04-26"), asked("Somsak", "", "1980-04-26")))
        is None
    )
    two = held("Somsak Chai", "Saetang", "1980-04-26")
    assert band(matched(two, asked("Somsak Chai", "", "1980-04-26"))) is Band.POSSIBLE
    # The name on another day, or on a year alone, is anybody's.
    assert band(matched(record, asked("Somsak", "", "1980-04-27"))) is None
    assert record_tokens(asked("Somsak", "", "1980")) == []


def test_a_typo_near_the_start_meets_through_a_suffix_edge() -> None:
    record = held("Oluwaseun", "Ibrahim", "1999-02-03")
    kinds = matched(record, asked("Oluwaseun", "Iraheem", "1999-02-03"))
    assert {"ES.w0", "ES.w1"} <= kinds
    assert not {"P.w0", "E.w0", "E2.w0"} & kinds
    assert band(kinds - {"G.d"}) is Band.POSSIBLE
    # With the whole given name on the exact date as well, the suffix makes it strong.
    assert band(kinds) is Band.STRONG


def test_twins_share_no_name_token_that_spans_both_fields() -> None:
    twin = held("Temitope", "Adeyemi", "1985-12-30", "F")
    kinds = matched(twin, asked("Adewale", "Adeyemi", "1985-12-30", "M"))
    assert not {k for k in kinds if k.split(".")[0] in {"P", "E", "X", "G", "D"}}
    assert band(kinds) is None
    # Relatives sharing the family name and the date do not hit with the fields
    # swapped either, nor with the same sex and initials.
    assert band(matched(twin, asked("Adeyemi", "Adewale", "1985-12-30", "M"))) is None
    assert band(matched(twin, asked("Tolani", "Adeyemi", "1985-12-30", "F"))) is None


def test_a_full_date_query_does_not_meet_another_day_of_the_same_year() -> None:
    record = held("Arben", "Leka", "2011-02-03")
    assert not matched(record, asked("Arben", "Leka", "2011-09-20"))
    year_only = matched(record, asked("Arben", "Leka", "2011"))
    assert year_only == {"S.y"}
    # On the year alone only the whole name spelled alike meets: a namesake born that
    # year is no different, and anything looser would meet many more of them.
    assert not matched(record, asked("Arben", "Lekaj", "2011"))


def test_a_year_only_record_meets_a_full_date_query_on_the_year() -> None:
    record = held("Arben", "Leka", "2011")
    assert matched(record, asked("Arben", "Leka", "2011-09-20")) == {"S.y"}


def test_every_token_carries_a_date_and_no_date_means_no_token() -> None:
    tokens = record_tokens(held("Blessing", "Okonkwo", "1999-04-12", "F"))
    assert tokens
    for token in tokens:
        # day/month in order on the windows and the exact date, unordered on the slip key
        assert token.value.endswith((b"|12/4", b"|4/12", b"f1999")), token
    assert record_tokens(VictimRecord("R1", "Blessing", "Okonkwo")) == []


def test_token_count_is_bounded_for_long_names() -> None:
    long = held("María José Guadalupe", "García Hernández de la Cruz", "1980-01-02", "F")
    assert len(record_tokens(long)) <= MAX_TOKENS
    assert len(record_tokens(asked("Maria José", "García", "1980"))) <= MAX_TOKENS


def test_kinds_are_side_local_and_values_do_not_name_the_field() -> None:
    tokens = record_tokens(asked("Ion", "Popescu", "1990-05-17", "M"))
    kinds = {t.kind.split(".")[0] for t in tokens}
    assert {"S", "N", "P", "E", "ES", "E2", "La0", "Lb0", "X", "G", "D", "O"} <= kinds
    assert all(b"|La" not in t.value and b"|Lb" not in t.value for t in tokens)
    assert all(
        isinstance(t, Token) and t.value.startswith(b"mlax/v1/match-token/2|") for t in tokens
    )
    assert TOKEN_DOMAIN == 2


def test_a_one_part_name_yields_only_exact_date_tokens() -> None:
    assert {t.kind for t in record_tokens(held("Ivan", "", "1990-05-17"))} == {"O.d"}
    assert {t.kind for t in record_tokens(asked("Ivan", "", "1990-05-17"))} == {"O.d", "G.d", "H.d"}
    assert record_tokens(held("Ivan", "", "1990-05")) == []
    assert record_tokens(asked("Nguyen Van Anh", "", "1990-05-17"))  # one field, several parts


def test_the_worked_example_of_the_protocol_document() -> None:
    # docs/protocol-matching.md 2: the P token of Olena Shevchenko through the RFC 9497
    # A.1.1 key and blind, and the 8 bytes a holder publishes.
    from exchange.matching import oprf

    token = next(
        t for t in record_tokens(asked("Olena", "Shevchenko", "2001-11-03")) if t.kind == "P.w0"
    )
    assert token.value == b"mlax/v1/match-token/2|P|aln skCnk|w0|2000-2001|3/11"
    key = bytes.fromhex("5ebcea5ee37023ccb9fc2d2019f9d7737be85591ae8652ffa9ef0f4d37063b0e")
    output = oprf.evaluate(key, token.value)
    assert output[:8].hex() == "702d97ed53264ae1"

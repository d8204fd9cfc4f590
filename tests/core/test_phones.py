import hashlib
import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.phones import InvalidPhone, PhoneRules, mask, normalize, user_key

FORMATS = ["+7(916)539-6205", "+7 (916) 539-6205", "79165396205", "89165396205", "9165396205"]
BAD = ["", "   ", "+7 (916) 539-62O5", "12345", "+7916539620", "+79165396205999", "phone",
       "8916539620555", "+1 (916) 539"]


@pytest.mark.parametrize("raw", FORMATS)
def test_every_format_gives_one_number(raw):
    assert normalize(raw) == "79165396205"


@pytest.mark.parametrize("raw", BAD)
def test_garbage_is_rejected_with_a_reason(raw):
    with pytest.raises(InvalidPhone, match="phone number"):
        normalize(raw)


def test_other_countries_need_a_plus_and_e164_length():
    assert normalize("+44 20 7946 0958") == "442079460958"
    assert normalize("+380 (44) 123-45-67", PhoneRules()) == "380441234567"


def test_user_key_is_rfc2104_hmac_sha256():
    expected = hmac.new(b"k", b"79165396205", hashlib.sha256).hexdigest()
    assert user_key("79165396205", "k") == expected
    assert user_key("79165396205", "other") != expected


def test_mask_hides_phone_numbers_in_text():
    # percent-encoded text is decoded first (service/accesslog.py: tests/service/test_hosting)
    line = "GET /users/+7 (916) 539-6205/recommendations, ?p=+7+(916)+539-62-05 and /89165396205/x"
    masked = mask(line)
    assert "539" not in masked and "8916" not in masked and "916" not in masked
    assert masked.endswith("/x") and masked.count("******05") == 3


phone_text = st.text(alphabet="0123456789 +()-.x\t", max_size=20)


@pytest.mark.spark
@settings(max_examples=1, deadline=None)
@given(st.lists(phone_text, min_size=200, max_size=200))
def test_the_cleaning_job_keys_phones_with_this_module(spark, samples):
    """Spark runs this module's rules: blank -> None, a phone -> its key, else INVALID."""
    from pyspark.sql import functions as F

    from core.phones import PhoneRules
    from etl.clean import INVALID, phone_keys

    samples += FORMATS + BAD + ["+7 (999) 000-0000", "+12345678", "\t79165396205", None]
    df = spark.createDataFrame([(s,) for s in samples], "raw string")
    rows = df.select("raw", phone_keys(PhoneRules(), "test-key")(F.col("raw")).alias("key"))
    for row in rows.collect():
        try:
            expected = user_key(normalize(row.raw), "test-key") if row.raw and row.raw.strip(
                " ") else None
        except InvalidPhone:
            expected = INVALID
        assert row.key == expected, row.raw


@given(st.text(alphabet="0123456789", min_size=10, max_size=10))
def test_property_every_format_of_one_number_gives_one_key(national):
    from simulation.generator import format_phone

    digits = "7" + national
    formats = [format_phone(digits, style) for style in range(4)] + [national]
    keys = {user_key(normalize(f), "k") for f in formats}
    assert len(keys) == 1 and normalize(formats[0]) == digits


@given(st.text(max_size=40))
def test_property_garbage_never_crashes(text):
    try:
        result = normalize(text)
    except InvalidPhone:
        return
    assert result.isdigit() and 8 <= len(result) <= 15

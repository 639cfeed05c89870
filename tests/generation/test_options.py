"""The one check of a generation's options (generation/options.py), as the form and the
providers use it."""

import pytest

from credit_app.errors import UnknownFeature, ValidationFailed
from credit_app.generation.options import FEATURE_INPUTS, check_options
from credit_app.services.generations import parse_options

FORMS = {
    "interior": {"room_type": "bedroom", "style": "japandi", "prompt": "  warm\x00 light "},
    "exterior": {"style": "farmhouse", "prompt": ""},
    "sketch": {"room_type": "kitchen", "style": "modern"},
    "furnish": {"room_type": "dining_room", "style": "coastal"},
    "remove": {"mask_x": "10", "mask_y": "20", "mask_w": "30", "mask_h": "40"},
    "video": {"motion": "pan_left"},
}


@pytest.mark.parametrize("feature", FORMS)
def test_what_the_form_stores_the_provider_reads_back_unchanged(feature):
    stored = parse_options(feature, FORMS[feature])
    assert set(stored) == set(FEATURE_INPUTS[feature])
    assert check_options(feature, stored, fill_defaults=True).as_options() == stored


def test_the_form_cleans_the_prompt_and_stores_the_mask_as_fractions():
    assert parse_options("interior", FORMS["interior"])["prompt"] == "warm light"
    assert parse_options("remove", FORMS["remove"])["mask"] == pytest.approx(
        {"x": 0.1, "y": 0.2, "w": 0.3, "h": 0.4}
    )


def test_a_missing_choice_is_an_error_on_the_form_and_a_default_for_a_provider():
    with pytest.raises(ValidationFailed) as caught:
        check_options("interior", {"style": "modern"}, fill_defaults=False)
    assert caught.value.details["field"] == "room_type"
    choices = check_options("interior", {}, fill_defaults=True)
    assert (choices.style, choices.room_type, choices.prompt) == ("modern", "living_room", "")


def test_a_mask_a_hair_past_the_edge_is_trimmed_to_the_photo():
    choices = check_options(
        "remove", {"mask": {"x": 0.5, "y": 0, "w": 0.5005, "h": 1}}, fill_defaults=True
    )
    assert choices.mask == (0.5, 0.0, 0.5, 1.0)


def test_an_unknown_feature_is_refused():
    with pytest.raises(UnknownFeature):
        check_options("paint", {}, fill_defaults=True)

"""The demo's prompt filter: refuses blocklist terms, disguised or not, with a message; off by a switch."""

import pytest

from mini_t2i.demo.handlers import DemoInputError, DemoLimits, check_prompt
from mini_t2i.demo.prompt_filter import PromptFilter, PromptRefused, normalize


@pytest.mark.parametrize("prompt", [
    "a nude figure", "NUDE", "Ｎｕｄｅ portrait",  # case, full-width letters
    "a nu\u200bde figure",  # a zero-width space inside the word
    "some gore, please", "explicit   sex", "explicit-sex"])
def test_blocklisted_prompts_are_refused_with_the_term(prompt):
    with pytest.raises(DemoInputError, match="does not draw prompts containing"):
        check_prompt(prompt, DemoLimits())


@pytest.mark.parametrize("prompt", ["a red circle", "a nudibranch", "gorgeous stars", "three squares",
                                    "خط أحمر", "赤い丸", "🙂 a smiley"])
def test_other_prompts_pass(prompt):
    assert check_prompt(prompt, DemoLimits()) == prompt


def test_the_switch_turns_it_off_and_a_custom_list_replaces_it(tmp_path):
    assert check_prompt("a nude figure", DemoLimits(prompt_filter=False)) == "a nude figure"
    custom = tmp_path / "list.txt"
    custom.write_text("# ours\nblue square\n")
    limits = DemoLimits(blocklist=str(custom))
    with pytest.raises(DemoInputError, match="'blue square'"):
        check_prompt("a Blue  Square above a star", limits)
    assert check_prompt("a nude figure", limits)  # the shipped list is replaced, not added to
    with pytest.raises(FileNotFoundError, match="does not exist"):
        PromptFilter.from_file(tmp_path / "missing.txt")


def test_normalisation():
    assert normalize("Ｈｅｌｌｏ,\u200dWORLD!!") == "hello world"
    with pytest.raises(PromptRefused):
        PromptFilter(["cat"]).check("a CAT.")

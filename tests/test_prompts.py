import pytest

from thinkling.runtime.errors import InvalidRequest
from thinkling.runtime.prompts import render_chat
from thinkling.runtime.types import Message


def test_fallback_format_and_stop():
    r = render_chat([Message("system", "Be brief."), Message("user", "Hi"), Message("assistant", "Hello"),
                     Message("user", "2+2?")], template=None)
    assert r.text == "Be brief.\n\nUser: Hi\nAssistant: Hello\nUser: 2+2?\nAssistant:"
    assert r.stops == ["\nUser:"] and r.add_bos and r.template == "fallback"


def test_model_template_with_bos_is_not_doubled():
    tpl = "{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}" \
          "{% if add_generation_prompt %}<assistant>{% endif %}"
    r = render_chat([Message("user", "x")], tpl, bos_token="<s>")
    assert r.text == "<s><user>x<assistant>" and r.add_bos is False


def test_template_variables_reach_the_template():
    tpl = "{{ messages[0].content }}{% if thinking_mode == 'direct' %}<D>{% else %}<T>{% endif %}"
    assert render_chat([Message("user", "q")], tpl, thinking_mode="direct").text == "q<D>"
    assert render_chat([Message("user", "q")], tpl).text == "q<T>"


@pytest.mark.parametrize("messages", [[], [Message("wizard", "x")]])
def test_bad_messages_are_invalid_requests(messages):
    with pytest.raises(InvalidRequest):
        render_chat(messages, None)


def test_sandboxed_template_cannot_reach_python():
    tpl = "{{ ''.__class__.__mro__[1].__subclasses__() }}"
    with pytest.raises(Exception) as e:
        render_chat([Message("user", "x")], tpl)
    assert "unsafe" in str(e.value).lower() or "access" in str(e.value).lower()

import pytest

from machined.errors import BadRequest
from machined.instances import templates


def ctx(**config):
    return templates.context("c01", "x86_64", config, {}, "create", "/etc/hosts", {"a": "b"})


def test_renders_lxd_style_context():
    text = ("127.0.1.1 {{ instance.name }} {{ trigger }} {{ path }} {{ properties.a }} "
            "{{ config_get('user.x', 'dflt') }} {{ config_get('user.y', 'no') }}\n")
    out = templates.render(text, ctx(**{"user.y": "yes"}))
    assert out == "127.0.1.1 c01 create /etc/hosts b dflt yes\n"


def test_sandbox_refuses_reaching_python_internals():
    with pytest.raises(BadRequest, match="Template error"):
        templates.render("{{ ''.__class__.__mro__[1].__subclasses__() }}", ctx())


def test_output_is_capped_while_it_streams():
    with pytest.raises(BadRequest, match="larger than"):
        templates.render("{% for i in range(100000) %}0123456789ab{% endfor %}", ctx(),
                         limit=1 << 20)


def test_syntax_errors_are_one_sentence():
    with pytest.raises(BadRequest, match="Template error"):
        templates.render("{% if %}", ctx())

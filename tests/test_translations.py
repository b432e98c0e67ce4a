"""The Korean translation is complete and compiled, and the UI switches to it."""
from __future__ import annotations

import ast
import gettext
from pathlib import Path

import pytest
from django.utils import translation

ROOT = Path(__file__).resolve().parent.parent
CATALOGS = [ROOT / app / "locale" / "ko" / "LC_MESSAGES" for app in ("pyhub_ai", "example", "mysite")]


def po_entries(path: Path) -> dict[str, list[str]]:
    """msgid -> its msgstr values (plural forms included), parsed from a .po file."""
    entries: dict[str, list[str]] = {}
    msgid, field, values = None, None, {}
    for line in path.read_text(encoding="utf-8").splitlines() + [""]:
        if line.startswith("msgid "):
            if msgid is not None:
                entries[msgid] = list(values.values())
            msgid, field, values = ast.literal_eval(line[6:]), "msgid", {}
        elif line.startswith(("msgstr", "msgid_plural")):
            field, _, literal = line.partition(" ")
            values[field] = ast.literal_eval(literal) if field != "msgid_plural" else None
            if field == "msgid_plural":
                values.pop(field)
        elif line.startswith('"') and field == "msgid":
            msgid += ast.literal_eval(line)
        elif line.startswith('"') and field in values:
            values[field] += ast.literal_eval(line)
    if msgid is not None:
        entries[msgid] = list(values.values())
    entries.pop("", None)
    return entries


@pytest.mark.parametrize("catalog", CATALOGS, ids=lambda p: p.parts[-4])
def test_every_string_has_a_korean_translation(catalog):
    untranslated = [msgid for msgid, values in po_entries(catalog / "django.po").items() if not all(values)]
    assert untranslated == []


@pytest.mark.parametrize("catalog", CATALOGS, ids=lambda p: p.parts[-4])
def test_the_compiled_catalog_matches_the_po_file(catalog):
    with open(catalog / "django.mo", "rb") as mo:
        compiled = gettext.GNUTranslations(mo)
    for msgid, values in po_entries(catalog / "django.po").items():
        if len(values) == 1:
            assert compiled.gettext(msgid) == values[0]


@pytest.mark.django_db
def test_the_chat_page_renders_in_korean(client, django_user_model):
    user = django_user_model.objects.create_user(username="minji", password="minji-pass-123")
    client.force_login(user)
    response = client.get("/example/chat/1/", HTTP_ACCEPT_LANGUAGE="ko")
    page = response.content.decode()
    assert 'lang="ko"' in page
    assert "메시지를 입력하세요…" in page and "보내기" in page


def test_user_facing_errors_are_translated():
    with translation.override("ko"):
        assert translation.gettext("The assistant could not answer. Please try again.") == "어시스턴트가 답변하지 못했습니다. 다시 시도해 주세요."

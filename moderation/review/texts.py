"""Every string of the review page, in Dutch (the default) and English, and the
rejection templates a reviewer picks from.

A rejection's ``message_nl`` goes back to the author in the platform's app, so the
templates are written for a parent, in plain Dutch; the reviewer may add free text.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Lang = Literal["nl", "en"]
LANGS: tuple[Lang, ...] = ("nl", "en")
DEFAULT_LANG: Lang = "nl"


def as_lang(value: str | None) -> Lang | None:
    """``"nl"`` or ``"en"``, or None for anything else."""
    if value == "nl":
        return "nl"
    if value == "en":
        return "en"
    return None


@dataclass(frozen=True, slots=True)
class RejectTemplate:
    code: str
    label_nl: str
    label_en: str
    message_nl: str
    message_en: str


REJECT_TEMPLATES: tuple[RejectTemplate, ...] = (
    RejectTemplate(
        "tone",
        "Toon: niet positief of respectvol",
        "Tone: not positive or respectful",
        "Je bericht past niet bij de afspraken van de school over positieve en respectvolle "
        "communicatie. Pas je bericht aan en probeer het opnieuw.",
        "Your message does not fit the school's agreements on positive and respectful "
        "communication. Please rephrase it and try again.",
    ),
    RejectTemplate(
        "kindgesprek",
        "Over één kind: via het kindgesprek",
        "About one child: use the child conversation",
        "Dit bericht gaat over één kind. Bespreek dit liever in het kindgesprek met de "
        "leerkracht, of bel de school.",
        "This message is about one child. Please discuss it in the child conversation "
        "(kindgesprek) with the teacher, or call the school.",
    ),
    RejectTemplate(
        "privacy",
        "Persoonlijke gegevens",
        "Personal information",
        "Je bericht bevat persoonlijke gegevens (zoals een telefoonnummer, een adres of "
        "informatie over een kind) die niet in de groep thuishoren.",
        "Your message contains personal information (such as a phone number, an address "
        "or information about a child) that does not belong in the group.",
    ),
    RejectTemplate(
        "photo",
        "Foto: geen toestemming",
        "Photo: no consent",
        "Op een foto staan kinderen van wie we geen toestemming hebben om de foto te delen. "
        "Plaats de foto zonder deze kinderen.",
        "A photo shows children whose parents have not consented to sharing it. Please "
        "post it without these children.",
    ),
    RejectTemplate(
        "other",
        "Andere reden (typ hieronder)",
        "Other reason (type below)",
        "",
        "",
    ),
)
TEMPLATES_BY_CODE = {t.code: t for t in REJECT_TEMPLATES}

REPHRASE_NL = "De school vraagt je om je bericht anders te formuleren voordat het geplaatst wordt."
REPHRASE_EN = "The school asks you to rephrase your message before it is posted."
REJECT_DEFAULT_NL = "Je bericht is door de school bekeken en wordt niet geplaatst."
REJECT_DEFAULT_EN = "The school has reviewed your message and will not post it."

CATEGORY_LABELS: dict[str, tuple[str, str]] = {
    "insult": ("Schelden / beledigen", "Swearing / insults"),
    "hate": ("Discriminatie", "Discrimination"),
    "threat": ("Bedreiging", "Threat"),
    "sexual": ("Seksueel getint", "Sexual"),
}

KIND_LABELS: dict[str, tuple[str, str]] = {
    "hold": ("Vastgehouden", "Held"),
    "report": ("Gemeld", "Reported"),
    "appeal": ("Bezwaar", "Appeal"),
}

ROLE_LABELS: dict[str, tuple[str, str]] = {
    "parent": ("Ouder", "Parent"),
    "teacher": ("Leerkracht", "Teacher"),
    "staff": ("Medewerker", "Staff"),
    "admin": ("Directie", "Admin"),
}

ACTION_LABELS: dict[str, tuple[str, str]] = {
    "release": ("Plaatsen", "Release"),
    "release_blur": ("Plaatsen met vervaging", "Release with blur"),
    "reject": ("Afwijzen", "Reject"),
    "rephrase": ("Vraag om te herformuleren", "Ask to rephrase"),
}

FACE_LABELS: dict[str, tuple[str, str]] = {
    "consented": ("Kind met toestemming", "Child with consent"),
    "no_consent": ("Kind zonder toestemming (vervaagd)", "Child without consent (blurred)"),
    "unknown": ("Onbekend gezicht", "Unknown face"),
    "undecidable": ("Te klein of onscherp om te herkennen", "Too small or blurry to recognise"),
}

UI: dict[str, tuple[str, str]] = {
    "title": ("Meldingen beoordelen", "Review queue"),
    "queue": ("Wachtrij", "Queue"),
    "history": ("Geschiedenis", "History"),
    "export": ("Export (CSV)", "Export (CSV)"),
    "sign_out": ("Afmelden", "Sign out"),
    "switch_lang": ("English", "Nederlands"),
    "empty": ("Er wacht niets op je. Goed gedaan!", "Nothing is waiting for you. Well done!"),
    "filters": ("Filteren", "Filter"),
    "all": ("Alles", "All"),
    "category": ("Categorie", "Category"),
    "group": ("Groep", "Group"),
    "author_role": ("Afzender", "Author"),
    "kind": ("Soort", "Kind"),
    "escalated_only": ("Alleen geëscaleerd", "Escalated only"),
    "apply": ("Toepassen", "Apply"),
    "waiting": ("wacht", "waiting"),
    "severity": ("Ernst", "Severity"),
    "escalated": ("Geëscaleerd", "Escalated"),
    "escalated_threat": ("bedreiging", "threat"),
    "escalated_overdue": ("wacht te lang", "waiting too long"),
    "appeal_by_author": ("Bezwaar van de afzender", "Appeal by the author"),
    "rejected_by": ("Eerder afgewezen door", "Rejected before by"),
    "reports": ("Meldingen", "Reports"),
    "reason_for_author": ("Reden voor de afzender", "Reason for the author"),
    "scores": ("Scores", "Scores"),
    "channel_group": ("Groep", "Group"),
    "channel_kindgesprek": ("Kindgesprek", "Child conversation"),
    "channel_school": ("Schoolbreed", "School-wide"),
    "attachments": ("Foto's", "Photos"),
    "attachment_held": ("vastgehouden", "held"),
    "faces_found": ("Gezichten", "Faces"),
    "faces_flagged": ("te controleren", "to check"),
    "reject_reason": ("Reden (bij afwijzen)", "Reason (when rejecting)"),
    "free_text": ("Toelichting voor de afzender (optioneel)", "Note for the author (optional)"),
    "more_actions": ("Afwijzen of laten herformuleren", "Reject or ask to rephrase"),
    "select": ("Selecteren", "Select"),
    "select_all": ("Alles selecteren", "Select all"),
    "bulk": ("Meerdere tegelijk", "Several at once"),
    "action": ("Actie", "Action"),
    "bulk_apply": ("Uitvoeren", "Apply"),
    "choose": ("Kies…", "Choose…"),
    "done": ("{n} bericht(en) afgehandeld.", "{n} message(s) decided."),
    "failed": ("{n} bericht(en) niet afgehandeld: {why}", "{n} message(s) not decided: {why}"),
    "err_already_decided": (
        "iemand anders heeft dit al beoordeeld",
        "someone else has decided this already",
    ),
    "err_reason_required": ("kies een reden of typ een toelichting", "choose or type a reason"),
    "err_appeal_needs_other_reviewer": (
        "een bezwaar beoordeelt een andere collega dan wie het afwees",
        "an appeal is decided by a colleague other than the one who rejected it",
    ),
    "err_nothing_selected": ("niets geselecteerd", "nothing selected"),
    "err_unknown_post": (
        "dit bericht bestaat niet of hoort niet bij jouw groepen",
        "this post does not exist or is not in your groups",
    ),
    "err_not_in_queue": ("dit bericht staat niet in de wachtrij", "this post is not in the queue"),
    "err_unknown_reason": ("onbekende reden", "unknown reason"),
    "err_reason_too_long": ("de toelichting is te lang", "the note is too long"),
    "err_other": ("dat lukte niet", "that did not work"),
    "signed_in_as": ("Aangemeld als", "Signed in as"),
    "all_groups": ("hele school", "whole school"),
    "history_title": ("Recente beslissingen", "Recent decisions"),
    "when": ("Wanneer", "When"),
    "who": ("Wie", "Who"),
    "what": ("Wat", "What"),
    "post": ("Bericht", "Post"),
    "why": ("Waarom", "Why"),
    "export_title": ("Audit-export voor de privacyfunctionaris", "Audit export for the DPO"),
    "from": ("Van", "From"),
    "to": ("Tot en met", "Up to and including"),
    "download": ("Downloaden", "Download"),
    "login_failed_title": ("Aanmelden lukte niet", "Sign-in failed"),
    "login_failed": (
        "De aanmeldlink is ongeldig of verlopen. Open het beoordelen opnieuw vanuit de app.",
        "The sign-in link is invalid or has expired. Open the review page again from the app.",
    ),
    "login_needed_title": ("Niet aangemeld", "Not signed in"),
    "login_needed": (
        "Je bent niet (meer) aangemeld. Open het beoordelen opnieuw vanuit de app.",
        "You are not signed in (any more). Open the review page again from the app.",
    ),
    "forbidden_title": ("Niet toegestaan", "Not allowed"),
    "forbidden": (
        "Dit formulier is verlopen. Laad de pagina opnieuw en probeer het nog eens.",
        "This form has expired. Reload the page and try again.",
    ),
    "not_found_title": ("Niet gevonden", "Not found"),
    "not_found": (
        "Dit bestaat niet, of je mag het niet zien.",
        "This does not exist, or you may not see it.",
    ),
    "signed_out": ("Je bent afgemeld.", "You are signed out."),
    "minutes_short": ("{m} min", "{m} min"),
    "hours_short": ("{h} u {m} min", "{h} h {m} min"),
    "days_short": ("{d} d {h} u", "{d} d {h} h"),
    "no_text": ("(geen tekst)", "(no text)"),
}


def translator(lang: Lang) -> Callable[..., str]:
    """``t("key", n=3)``: the string in ``lang``, formatted; unknown keys show as is."""
    index = 0 if lang == "nl" else 1

    def t(key: str, **values: object) -> str:
        pair = UI.get(key)
        text = pair[index] if pair else key
        return text.format(**values) if values else text

    return t


def label(table: dict[str, tuple[str, str]], key: str | None, lang: Lang) -> str:
    if key is None:
        return ""
    pair = table.get(key)
    if pair is None:
        return key
    return pair[0] if lang == "nl" else pair[1]


def waiting_text(minutes: float, lang: Lang) -> str:
    """``12 min``, ``3 u 5 min``, ``2 d 4 u``: how long an item has waited."""
    t = translator(lang)
    m = int(minutes)
    if m < 60:
        return t("minutes_short", m=m)
    h, m = divmod(m, 60)
    if h < 24:
        return t("hours_short", h=h, m=m)
    d, h = divmod(h, 24)
    return t("days_short", d=d, h=h)

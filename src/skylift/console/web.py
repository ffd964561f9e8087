"""What every console page uses: templates in the reader's language, forms and their errors, notices."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import urlencode

from fastapi import Request
from jinja2 import Environment, PackageLoader, pass_context, select_autoescape
from jinja2.runtime import Context
from markupsafe import Markup
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import FormData
from starlette.responses import HTMLResponse, RedirectResponse, Response

from skylift.console import auth, i18n
from skylift.console.words import N_
from skylift.context import AppContext
from skylift.db.session import savepoint as savepoint
from skylift.kit.errors import SkyliftError
from skylift.kit.nul import refuse_nul

T = TypeVar("T")
PREFIX = "/console"
NOTICE_COOKIE = "skylift_notice"
PAGE_SIZE = 25

# What a redirect after a change says on the next page (a key, so no text from a URL is ever shown).
NOTICES = {
    "saved": N_("Saved."),
    "created": N_("Created."),
    "deleted": N_("Deleted."),
    "uploaded": N_("The package is uploaded."),
    "signed_out": N_("You are signed out."),
    "password_changed": N_("Your password is changed."),
    "paused": N_("The campaign is paused."),
    "resumed": N_("The campaign is resumed."),
    "approved": N_("The next group is approved."),
    "retried": N_("The notice is sent again."),
    "canceled": N_("Canceled."),
    "enabled": N_("Enabled."),
    "disabled": N_("Disabled."),
    "token_revoked": N_("The token is revoked."),
}

PAGE_HEADERS = {
    # Pages carry what only a signed-in user may see (credentials, once): never kept by a cache.
    "Cache-Control": "no-store",
    # Only the console's own files; no other site may frame a page (clickjacking) or receive a form.
    "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}

templates = Environment(
    loader=PackageLoader("skylift.console", "templates"),
    autoescape=select_autoescape(default=True),
    extensions=["jinja2.ext.i18n"],
    trim_blocks=True,
    lstrip_blocks=True,
)


def _gettext(catalog: i18n.Catalog) -> Callable[..., str]:
    # As jinja2's "newstyle" gettext: values are filled in after translation, and escaped.
    @pass_context
    def gettext(context: Context, message: str, **values: Any) -> str:
        text = catalog.gettext(message)
        if context.eval_ctx.autoescape:
            text = Markup(text)
        return text % values if values else text

    return gettext


def _ngettext(catalog: i18n.Catalog) -> Callable[..., str]:
    @pass_context
    def ngettext(context: Context, singular: str, plural: str, count: int, **values: Any) -> str:
        text = catalog.ngettext(singular, plural, count)
        if context.eval_ctx.autoescape:
            text = Markup(text)
        return text % {"num": count, **values}

    return ngettext


def language_of(request: Request) -> str:
    chosen: str | None = getattr(request.state, "language", None)
    if chosen is None:
        chosen = i18n.choose(request.cookies.get(i18n.LANGUAGE_COOKIE), request.headers.get("accept-language"))
        request.state.language = chosen
    return chosen


def catalog_of(request: Request) -> i18n.Catalog:
    return i18n.catalog(language_of(request))


def context_of(request: Request) -> AppContext:
    context: AppContext = request.app.state.skylift
    return context


def secure_cookies(context: AppContext) -> bool:
    return context.settings.resolved_public_url.startswith("https://")


def url(path: str, **query: Any) -> str:
    """A console URL; query values that are None or empty are left out."""
    kept = {k: v for k, v in query.items() if v not in (None, "", [])}
    return f"{PREFIX}{path}" + (f"?{urlencode(kept, doseq=True)}" if kept else "")


def render(request: Request, template: str, status: int = 200, **values: Any) -> HTMLResponse:
    """A page in the reader's language, with the layout's user, notice and CSRF token."""
    catalog = catalog_of(request)
    context = context_of(request)
    auth.new_presession(request)
    notice = NOTICES.get(request.cookies.get(NOTICE_COOKIE, ""))
    page = templates.get_template(template).render(
        request=request,
        path=request.url.path,
        language=catalog.language,
        languages=i18n.LANGUAGES,
        gettext=_gettext(catalog),
        ngettext=_ngettext(catalog),
        t=catalog.translate,
        csrf=auth.csrf_token(request),
        me=getattr(request.state, "user", None),
        notice=catalog.gettext(notice) if notice else None,
        url=url,
        **values,
    )
    response = HTMLResponse(page, status_code=status, headers=PAGE_HEADERS)
    if notice or NOTICE_COOKIE in request.cookies:
        response.delete_cookie(NOTICE_COOKIE, path="/")
    auth.ensure_presession(request, response, secure_cookies(context))
    return response


def redirect(to: str, notice: str | None = None) -> RedirectResponse:
    """After a change: to the next page (303: the browser follows with a GET), saying what was done."""
    response = RedirectResponse(to, status_code=303)
    if notice is not None:
        remember_notice(response, notice)
    return response


def remember_notice(response: Response, notice: str) -> None:
    """What the next page says was done (one of NOTICES)."""
    response.set_cookie(NOTICE_COOKIE, notice, max_age=60, httponly=True, samesite="lax", path="/")


@dataclass
class Form:
    """A submitted form: its values (to fill the form in again) and what is wrong with them, per field."""

    values: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def error(self, name: str) -> str | None:
        return self.errors.get(name)

    def value(self, name: str, default: Any = "") -> Any:
        return self.values.get(name, default)

    @property
    def general(self) -> list[str]:
        """Errors that belong to no field of the form."""
        return [message for name, message in self.errors.items() if name == ""]


async def form_of(request: Request) -> FormData:
    return await request.form()


def text_fields(form: FormData) -> dict[str, str]:
    return {key: value for key, value in form.items() if isinstance(value, str) and key != auth.CSRF_FIELD}


_FIELD_PREFIX = re.compile(r"^([a-z_]+(?:\.[a-z_]+)*): (.+)$", re.DOTALL)


def _validation_message(error: Mapping[str, Any], catalog: i18n.Catalog) -> str:
    kind = str(error.get("type", ""))
    ctx = error.get("ctx") or {}
    simple = {
        "missing": N_("This field is required."),
        "int_parsing": N_("Enter a whole number."),
        "int_type": N_("Enter a whole number."),
        "int_from_float": N_("Enter a whole number."),
        "float_parsing": N_("Enter a number."),
        "float_type": N_("Enter a number."),
        "finite_number": N_("Enter a number."),
        "literal_error": N_("Choose one of the options."),
        "enum": N_("Choose one of the options."),
        "bool_parsing": N_("Choose yes or no."),
        "datetime_parsing": N_("Enter a date and time."),
        "datetime_from_date_parsing": N_("Enter a date and time."),
        "time_parsing": N_("Enter a time as HH:MM."),
        "string_pattern_mismatch": N_("Only letters, digits and _ . : @ - are allowed here."),
        "extra_forbidden": N_("This field is not part of the form."),
    }
    if kind in simple:
        return catalog.gettext(simple[kind])
    if kind == "string_too_short":
        if ctx.get("min_length") == 1:
            return catalog.gettext("This field is required.")
        return catalog.gettext("At least {min_length} characters.").format(**ctx)
    if kind == "string_too_long":
        return catalog.gettext("At most {max_length} characters.").format(**ctx)
    if kind in ("too_short", "too_long"):
        return catalog.gettext("At least {min_length} and at most {max_length} items.").format(
            min_length=ctx.get("min_length", 0), max_length=ctx.get("max_length", "∞")
        )
    bounds = {
        "greater_than_equal": (N_("Must be at least {limit}."), "ge"),
        "greater_than": (N_("Must be more than {limit}."), "gt"),
        "less_than_equal": (N_("Must be at most {limit}."), "le"),
        "less_than": (N_("Must be less than {limit}."), "lt"),
    }
    if kind in bounds:
        message, key = bounds[kind]
        return catalog.gettext(message).format(limit=ctx.get(key))
    text = str(error.get("msg", "")).removeprefix("Value error, ")
    return catalog.translate(text)


def errors_of(
    exc: ValidationError | SkyliftError,
    catalog: i18n.Catalog,
    fields: Collection[str],
    aliases: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Error messages in the reader's language, by the form's field (`fields`: the names the form has,
    as the schema names them: `schedule.start_at`, or as `aliases` map them); an error of no field of the
    form is under ""."""
    found: dict[str, str] = {}
    aliases = aliases or {}
    if isinstance(exc, SkyliftError):
        message, name = exc.message, aliases.get(exc.field or "", exc.field or "")
        prefixed = _FIELD_PREFIX.match(message)
        if prefixed and prefixed.group(1) in fields and (name not in fields or name == prefixed.group(1)):
            name, message = prefixed.group(1), prefixed.group(2)
        found[name if name in fields else ""] = catalog.translate(message)
        return found
    for error in exc.errors():
        location = ".".join(str(part) for part in error.get("loc", ()) if not isinstance(part, int))
        message = _validation_message(error, catalog)
        text = str(error.get("msg", "")).removeprefix("Value error, ")
        prefixed = _FIELD_PREFIX.match(text)
        if prefixed and (not location or location not in fields):
            location, message = prefixed.group(1), catalog.translate(prefixed.group(2))
        location = aliases.get(location, location)
        while location and location not in fields:
            location = location.rpartition(".")[0]  # schedule.window.start: the form's schedule.window
        found.setdefault(location, message)
    return found


async def perform(
    request: Request,
    session: AsyncSession,
    values: dict[str, Any],
    work: Callable[[], Awaitable[T]],
    aliases: Mapping[str, str] | None = None,
) -> T | Form:
    """Validate and do a change in a savepoint; on an error nothing of it stays, and the answer is the form
    again with each error beside its field (the form's fields are the keys of `values`)."""
    try:
        refuse_nul(values)  # PostgreSQL could not store it: refused as the API refuses it
        async with savepoint(session):
            return await work()
    except (ValidationError, SkyliftError) as exc:
        return Form(values, errors_of(exc, catalog_of(request), set(values), aliases))


def given(values: Mapping[str, str], *names: str) -> dict[str, Any]:
    """The named form fields that are filled in (an empty field means "the default"), stripped."""
    return {name: values[name].strip() for name in names if values.get(name, "").strip()}


def checked(values: Mapping[str, str], name: str) -> bool:
    return values.get(name) in ("true", "on")


def when(value: datetime | None) -> str:
    """A time as the console shows it: UTC, to the second."""
    return "—" if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


def refused(request: Request, exc: Exception, status: int) -> Response:
    """The page for what the user may not do, or an expired form."""
    catalog = catalog_of(request)
    if isinstance(exc, auth.NotAllowed):
        message = catalog.gettext("This needs the {role} role.").format(role=catalog.gettext(exc.needed))
    else:
        message = catalog.gettext("This form has expired. Reload the page and try again.")
    return render(request, "refused.html", status=status, message=message)


templates.globals["when"] = when

"""nginx's access phase: allow/deny, auth_basic, auth_request, combined by ``satisfy``.

Order and combination (ngx_http_core_access_phase, ngx_http_core_post_access_phase): the handlers
run as nginx registers them, access (allow/deny) first, then auth_basic, then auth_request. With
``satisfy all`` the first refusal answers at once; with ``satisfy any`` the first handler that allows
ends the phase (and drops the WWW-Authenticate an earlier auth_basic set), a 401 or 403 is kept
(a 401 is not replaced by a later 403) and answered after the last handler, any other error answers
at once. Subrequests skip the phase (``r != r->main``).

Answers go through the engine's error_page handling; a 401 carries ``WWW-Authenticate`` (auth_basic's
``Basic realm="..."``, or the first one of the auth_request subrequest's upstream answer), which nginx
keeps when error_page serves another page for it.

auth_request needs IO: the phase returns an ``AuthSubrequest`` (the subrequest's ProxyPass and a
continuation); the IO layer runs it and calls back with the upstream status and headers. A
subrequest the engine answers itself (``return``, a file, an error) is resolved without IO.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from newproxy.config import AccessConfig
from newproxy.engine import errors
from newproxy.engine.addresses import Cidr, as_v4, client_address, parse_cidr
from newproxy.engine.context import RequestContext
from newproxy.engine.htpasswd import UserFiles, basic_credentials, verify
from newproxy.engine.types import (
    AuthSubrequest,
    Delayed,
    FileResponse,
    ProxyPass,
    Response,
    Result,
    deferred,
)
from newproxy.engine.variables import Getter, Template, variable_names

if TYPE_CHECKING:
    from newproxy.engine.engine import Engine

_DECLINED = 0
_OK = 1
_USER_FILES = UserFiles()


@dataclass(slots=True, frozen=True)
class CompiledAccess:
    satisfy_any: bool
    # allow/deny per client family, in order: (mask, network, deny); None: no rule of that family.
    rules4: tuple[tuple[int, int, bool], ...] | None
    rules6: tuple[tuple[int, int, bool], ...] | None
    rules_unix: tuple[bool, ...] | None
    realm: Template | None
    user_file: Template | None
    auth_request: str | None
    auth_set: tuple[tuple[str, Template], ...]
    auth_delay: float  # seconds a 401 waits (nginx's auth_delay, against password guessing)


def _upstream_getter(name: str) -> Getter | None:
    """$upstream_status and $upstream_http_NAME of an auth_request subrequest (its upstream's answer)."""
    if name == "upstream_status":
        return lambda ctx: str(ctx.upstream_answer[0]) if ctx.upstream_answer is not None else ""
    if name.startswith("upstream_http_") and len(name) > len("upstream_http_"):
        wanted = name[len("upstream_http_"):].replace("_", "-").lower().encode("latin-1")

        def get(ctx: RequestContext) -> str:
            if ctx.upstream_answer is None:
                return ""
            for key, value in ctx.upstream_answer[1]:
                if key.lower() == wanted:
                    return value.decode("latin-1")
            return ""

        return get
    return None


def auth_set_variables_known(text: str) -> list[str]:
    """The names in an auth_request_set value that only auth_request provides ($upstream_...)."""
    return [name for name in variable_names(text) if _upstream_getter(name) is not None]


def compile_access(config: AccessConfig, template: Callable[[str], Template],
                   computed: dict[str, Getter], captures: frozenset[str]) -> CompiledAccess:
    rules4: list[tuple[int, int, bool]] | None = None
    rules6: list[tuple[int, int, bool]] | None = None
    rules_unix: list[bool] | None = None
    for rule in config.rules:
        deny = rule.action == "deny"
        families: list[Cidr]
        if rule.address == "all":
            families = [(4, 0, 0), (6, 0, 0), (0, 0, 0)]
        elif rule.address == "unix:":
            families = [(0, 0, 0)]
        else:
            parsed = parse_cidr(rule.address)
            if parsed is None:
                raise ValueError(f'invalid parameter "{rule.address}"')
            families = [parsed[0]]
        for family, mask, network in families:
            if family == 4:
                rules4 = (rules4 or []) + [(mask, network, deny)]
            elif family == 6:
                rules6 = (rules6 or []) + [(mask, network, deny)]
            else:
                rules_unix = (rules_unix or []) + [deny]
    auth_set = []
    for setting in config.auth_request_set:
        extra = dict(computed)
        for name in variable_names(setting.value):
            getter = _upstream_getter(name)
            if getter is not None:
                extra[name] = getter
        auth_set.append((setting.variable, Template(setting.value, captures, extra)))
    basic = config.auth_basic is not None and config.auth_basic_user_file is not None
    return CompiledAccess(
        satisfy_any=config.satisfy == "any",
        rules4=tuple(rules4) if rules4 is not None else None,
        rules6=tuple(rules6) if rules6 is not None else None,
        rules_unix=tuple(rules_unix) if rules_unix is not None else None,
        realm=template(config.auth_basic) if basic and config.auth_basic is not None else None,
        user_file=template(config.auth_basic_user_file) if basic and config.auth_basic_user_file else None,
        auth_request=config.auth_request or None,
        auth_set=tuple(auth_set),
        auth_delay=config.auth_delay,
    )


# -- the handlers ---------------------------------------------------------------------------------

def _rules(ctx: RequestContext, access: CompiledAccess) -> int:
    """ngx_http_access_handler: the first rule of the client's family that matches decides."""
    family, value = client_address(ctx.request.client_addr[0])
    if family == 6 and access.rules4 is not None:
        family, value = as_v4((family, value))
    if family == 4:
        if access.rules4 is None:
            return _DECLINED
        for mask, network, deny in access.rules4:
            if value & mask == network:
                return _found(ctx, access, deny)
        return _DECLINED
    if family == 6:
        if access.rules6 is None:
            return _DECLINED
        for mask, network, deny in access.rules6:
            if value & mask == network:
                return _found(ctx, access, deny)
        return _DECLINED
    if access.rules_unix:
        return _found(ctx, access, access.rules_unix[0])
    return _DECLINED


def _found(ctx: RequestContext, access: CompiledAccess, deny: bool) -> int:
    """ngx_http_access_found: a deny is logged unless `satisfy any` may still let the request in."""
    if not deny:
        return _OK
    if not access.satisfy_any:
        errors.note(ctx, errors.ERR, "access forbidden by rule")
    return 403


def _basic(ctx: RequestContext, access: CompiledAccess) -> int:
    """ngx_http_auth_basic_handler."""
    assert access.realm is not None and access.user_file is not None
    realm = access.realm.render(ctx)
    if realm == "off":
        return _DECLINED
    credentials = basic_credentials(ctx.request.headers)
    if credentials is None:
        return _ask(ctx, realm)
    user, password = credentials
    entry = _USER_FILES.lookup(access.user_file.render(ctx), user)
    if isinstance(entry, int):
        return entry  # 403: no such file; 500: unreadable
    if entry is None:
        return _ask(ctx, realm)
    ok = verify(password, entry)
    if ok is None:
        return 500
    return _OK if ok else _ask(ctx, realm)


def _ask(ctx: RequestContext, realm: str) -> int:
    """ngx_http_auth_basic_set_realm: a 401 with WWW-Authenticate."""
    value = b'Basic realm="' + realm.encode("latin-1") + b'"'
    if ctx.www_authenticate is None:
        ctx.www_authenticate = [value]
    else:
        ctx.www_authenticate.append(value)
    return 401


# -- the phase -------------------------------------------------------------------------------------

class _Phase:
    """One run of the access phase: r->access_code under satisfy any."""

    __slots__ = ("access", "code", "ctx", "engine", "then")

    def __init__(self, engine: Engine, ctx: RequestContext, access: CompiledAccess, then: Callable[[], Result]) -> None:
        self.engine = engine
        self.ctx = ctx
        self.access = access
        self.then = then
        self.code = 0

    def step(self, rc: int) -> Result | bool | None:
        """After one handler: None goes on to the next one, True ends the phase allowed, a result
        answers now."""
        if rc == _DECLINED:
            return None
        if not self.access.satisfy_any:
            return None if rc == _OK else self.finalize(rc)
        if rc == _OK:
            self.code = 0
            if self.ctx.www_authenticate:
                self.ctx.www_authenticate.pop()  # nginx hides the header auth_basic set
            return True
        if rc in (401, 403):
            if self.code != 401:
                self.code = rc
            return None
        return self.finalize(rc)

    def post(self) -> Result:
        """ngx_http_core_post_access_phase."""
        if self.code:
            return self.finalize(self.code)
        return self.then()

    def finalize(self, status: int) -> Result:
        if status == 401 and self.access.auth_delay:  # ngx_http_core_auth_delay: answer later
            return Delayed(self.access.auth_delay, lambda: self._answer(401))
        return self._answer(status)

    def _answer(self, status: int) -> Result:
        return with_www_authenticate(self.ctx, self.engine._fail(self.ctx, status))

    def run(self) -> Result:
        access = self.access
        ctx = self.ctx
        for handler in (_rules, _basic if access.realm is not None else None):
            if handler is None:
                continue
            outcome = self.step(handler(ctx, access))
            if outcome is True:
                return self.then()
            if outcome is not None:
                return outcome  # type: ignore[return-value]
        if access.auth_request is not None:
            return self.subrequest(access.auth_request)
        return self.post()

    # -- auth_request ----------------------------------------------------------------------------
    def subrequest(self, uri: str) -> Result:
        """ngx_http_subrequest: GET ``uri`` through the same server, sharing the client's headers and
        the variables set so far, without the body and the args; its answer decides."""
        ctx = self.ctx
        if ctx.vars is None:
            ctx.vars = {}
        request = ctx.request.without_body(b"GET")
        sub = RequestContext(
            request=request, server=ctx.server, host=ctx.host, uri=uri, args="", request_uri=ctx.request_uri,
            uri_needs_escape=False, redirect_host=ctx.redirect_host, vars=ctx.vars, internal=True,
            valid_unparsed_uri=False, method=b"GET", subrequest=True, realip_from=ctx.realip_from,
        )
        answer = self.engine.subrequest(sub)
        if isinstance(answer, ProxyPass):
            answer.intercept = frozenset()  # the parent decides what the subrequest's status means
            return AuthSubrequest(answer, lambda status, headers: self.resume(sub, status, headers, True))
        if isinstance(answer, FileResponse):
            os.close(answer.fd)
            return self.resume(sub, answer.status, [], False)
        if isinstance(answer, Response):
            return self.resume(sub, answer.status, [], False)
        # A subrequest delayed by limit_req is not waited for (see the registry's caveat).
        return self.resume(sub, 500, [], False)

    def resume(self, sub: RequestContext, status: int, headers: list[tuple[bytes, bytes]], upstream: bool) -> Result:
        """ngx_http_auth_request_handler once the subrequest is done (``upstream``: it was proxied)."""
        ctx = self.ctx
        if upstream:
            sub.upstream_answer = (status, headers)
        if self.access.auth_set:
            variables = ctx.vars
            assert variables is not None
            for name, template in self.access.auth_set:
                variables[name] = template.render(sub)
        if status == 403:
            rc = 403
        elif status == 401:
            rc = 401
            found = next((v for k, v in headers if k.lower() == b"www-authenticate"), None)
            if found is not None:
                if ctx.www_authenticate is None:
                    ctx.www_authenticate = [found]
                else:
                    ctx.www_authenticate.append(found)
        elif 200 <= status < 300:
            rc = _OK
        else:
            rc = 500  # "auth request unexpected status"
        outcome = self.step(rc)
        if outcome is True:
            return self.then()
        if outcome is not None:
            return outcome  # type: ignore[return-value]
        return self.post()


def run(engine: Engine, ctx: RequestContext, access: CompiledAccess, then: Callable[[], Result]) -> Result:
    """The access and post-access phases; ``then`` runs the phases after them."""
    return _Phase(engine, ctx, access, then).run()


def with_www_authenticate(ctx: RequestContext, answer: Result) -> Result:
    """Put the pending WWW-Authenticate values into an answer made for a refusal, where nginx's header
    filter writes them: after Connection, before the headers added later (ETag, add_header...)."""
    values = ctx.www_authenticate
    if not values:
        return answer
    later = deferred(answer, with_www_authenticate, ctx)
    if later is not None:
        return later
    ctx.www_authenticate = None
    lines = b"".join(b"WWW-Authenticate: " + value + b"\r\n" for value in values)
    if isinstance(answer, ProxyPass):  # an error_page that is proxied: before the upstream's headers
        answer.extra_head += lines
        return answer
    if not answer.head:
        return answer  # 444: nothing is sent
    head = answer.head
    at = head.find(b"\r\nConnection: ")
    end = head.find(b"\r\n", at + 2) + 2 if at >= 0 else len(head) - 2
    answer.head = head[:end] + lines + head[end:]
    return answer

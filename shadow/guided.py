"""Coverage-guided traffic: requests for the parts of a config the generated traffic missed.

The generator (traffic.py) aims at each location, rewrite and ``if`` one at a time; some parts need
two things at once: an ``if`` at server level that sets a variable a location's ``if`` tests, a
``rewrite`` inside an ``if`` on a map of the User-Agent, a named location reached from an
``error_page`` of a status an ``if`` returns. For each part still uncovered, this module starts from
the requests that reach the part's server or location and tries one *probe* at a time on them (an
argument, a header, a method, a path, a client address: the inputs that select each map entry and
satisfy each ``if`` of the config), keeping the first request that reaches the part. Whether it
does is asked of newproxy's engine, traced (shadow/coverage.py): no socket. The requests found are
then sent to both targets like the others, so a part covered is a part compared.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator
from urllib.parse import quote

from nginx_parser import Directive, NginxConfig
from shadow import regex_sample
from shadow.coverage import Part, Replayer
from shadow.traffic import Request, _probes, probe_inputs

Probe = tuple[str, str, str]  # (kind, name, value): kind path | arg | header | method | source

# Client addresses a request can come from without any setup (all of 127/8 is loopback on Linux):
# how geo blocks and allow/deny rules see more than one client.
_SOURCES = ("127.0.0.2", "127.1.2.3", "127.255.255.254")
_BASES_PER_PART = 8  # start points tried per uncovered part


def _directives(directives: list[Directive]) -> Iterator[Directive]:
    for directive in directives:
        yield directive
        yield from _directives(list(directive.children()))


def if_probes(config: NginxConfig, seed: int) -> list[Probe]:
    """Inputs that make each ``if`` of the config hold (and fail): its operand, or strings sampled
    from its regex, carried the way its variable is read."""
    out: list[Probe] = []
    roots = [config.http.directive] if config.http is not None and getattr(config.http, "directive", None) else []
    for directive in _directives([d for root in roots for d in root.children()]):
        args = directive.args
        if directive.name != "if" or len(args) not in (1, 3) or not args[0].startswith("$"):
            continue
        values = ["1"]
        if len(args) == 3:
            operator, operand = args[1], args[2]
            if operator.lstrip("!") in ("~", "~*"):
                values = regex_sample.sample(operand, 2, seed, caseless=operator.endswith("*")) or []
            else:
                values = [operand, operand + "x"]
        out.extend(probe_inputs(args[0], [v for v in values if v.isprintable()]))
    return out


def rewrite_probes(config: NginxConfig, seed: int) -> list[Probe]:
    """Paths sampled from each ``rewrite`` regex: with a probe that takes the enclosing ``if``,
    they reach rewrites the generator's samples alone do not."""
    out: list[Probe] = []
    roots = [config.http.directive] if config.http is not None and getattr(config.http, "directive", None) else []
    for directive in _directives([d for root in roots for d in root.children()]):
        if directive.name == "rewrite" and directive.args:
            out.extend(("path", "", path) for path in regex_sample.sample(directive.args[0], 2, seed, prefix="/"))
    return out


def apply(request: Request, probe: Probe) -> Request:
    """``request`` changed by one probe (a new request; the label says which probe)."""
    kind, name, value = probe
    label = f"{request.label}+guided.{kind}"
    if kind == "source":
        return dataclasses.replace(request, source=value, label=label)
    if kind == "method":
        return dataclasses.replace(request, method=value, body=b"", label=label,
                                   headers=tuple(h for h in request.headers
                                                 if h[0].lower() not in ("content-length", "transfer-encoding")))
    if kind == "path":
        path, sep, query = request.target.partition("?")
        return dataclasses.replace(request, target=quote(value, safe="/%:@!$&'()*+,;=~") + sep + query, label=label)
    if kind == "arg":
        pair = quote(name, safe="") + "=" + quote(value, safe="")
        target = request.target + ("&" if "?" in request.target else "?") + pair
        return dataclasses.replace(request, target=target, label=label)
    headers = tuple(h for h in request.headers if h[0].lower() != name.lower()) + ((name, value),)
    return dataclasses.replace(request, headers=headers, label=label)


def _bases(part: Part, requests: list[Request], traces: list[set[Part]]) -> list[Request]:
    """Requests that reach the part's anchor, as varied as possible (one per set of locations first)."""
    reaching = [(r, t) for r, t in zip(requests, traces, strict=True)
                if not part.anchor or any(p.source == part.anchor for p in t)]
    chosen: list[Request] = []
    seen: set[frozenset[str]] = set()
    for request, trace in reaching:
        key = frozenset(p.source for p in trace if p.kind == "location")
        if key not in seen:
            seen.add(key)
            chosen.append(request)
            if len(chosen) >= _BASES_PER_PART:
                break
    return chosen


def guided_requests(config: NginxConfig, requests: list[Request], seed: int = 0, budget: int = 200,
                    replayer: Replayer | None = None) -> list[Request]:
    """Up to ``budget`` requests, each reaching at least one part ``requests`` do not."""
    replayer = replayer or Replayer(config)
    probes = list(dict.fromkeys([*_probes(config, seed), *if_probes(config, seed), *rewrite_probes(config, seed),
                                 *(("source", "", s) for s in _SOURCES)]))
    traces = [replayer.trace(r) for r in requests]
    covered: set[Part] = set().union(*traces) if traces else set()
    added: list[Request] = []
    for part in replayer.parts:
        if part in covered or len(added) >= budget:
            continue
        found = None
        for base in _bases(part, requests + added, traces + [replayer.trace(r) for r in added]):
            for probe in probes:
                candidate = apply(base, probe)
                trace = replayer.trace(candidate)
                if part in trace:
                    found = (candidate, trace)
                    break
            if found is not None:
                break
        if found is not None:
            added.append(found[0])
            covered |= found[1]
    return added

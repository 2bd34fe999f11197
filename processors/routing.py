"""Routing: a job's spec → the pool and lane that serve it. Pure; read from settings.

Rules are declarative (``[[routes]]`` in ``brigade.toml``): every field a rule gives must
match, the first matching rule wins. Without a matching rule a ``modelHint`` that names a
pool (or a pool's model) picks that pool; otherwise the default pool serves the job. An
unknown ``modelHint`` with no default pool is refused with :class:`NoRoute`, never dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

from brigade.errors import BrigadeError
from brigade.settings import Lane, RouteRule, Settings
from schemas.records import JobSpec


class NoRoute(BrigadeError):
    """No rule, pool or default serves this job; the job is rejected with this reason."""


@dataclass(frozen=True, slots=True)
class Route:
    """Where a job goes: a pool, one of its lanes, and the model that pool serves."""

    pool: str
    lane: Lane
    model: str


def _matches(rule: RouteRule, spec: JobSpec) -> bool:
    return (
        (rule.priority is None or rule.priority == spec.priority)
        and (rule.tenant is None or rule.tenant == spec.tenant_id)
        and (rule.model_hint is None or rule.model_hint == spec.model_hint)
        and (rule.long_context is None or rule.long_context == spec.long_context)
        and (rule.batchable is None or rule.batchable == spec.batchable)
    )


class Router:
    """Resolves routes for one ``Settings``; build once, call per job."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._by_hint: dict[str, str] = {}
        for name, pool in settings.pools.items():
            self._by_hint.setdefault(pool.model, name)
        for name in settings.pools:
            self._by_hint[name] = name

    def route(self, spec: JobSpec) -> Route:
        """The route of ``spec``.

        Raises:
            NoRoute: no rule matches, the model hint names no pool and there is no default.
        """
        lane: Lane = "interactive" if spec.priority == "interactive" else "batch"
        for rule in self._settings.routes:
            if _matches(rule, spec):
                return self._route(rule.pool, rule.lane or lane)
        if spec.model_hint is not None and spec.model_hint in self._by_hint:
            return self._route(self._by_hint[spec.model_hint], lane)
        if self._settings.default_pool is not None:
            return self._route(self._settings.default_pool, lane)
        raise NoRoute(
            f"no route for modelHint={spec.model_hint!r} (tenant {spec.tenant_id!r}): no rule "
            "matches, no pool serves that model and no default_pool is configured"
        )

    def fallback(self, pool: str, lane: str) -> Route | None:
        """The route to ``pool``'s fallback pool in the same lane, if it has one."""
        fallback = self._settings.pools[pool].fallback if pool in self._settings.pools else None
        if fallback is None or fallback == pool:
            return None
        return self._route(fallback, "interactive" if lane == "interactive" else "batch")

    def _route(self, pool: str, lane: Lane) -> Route:
        return Route(pool=pool, lane=lane, model=self._settings.pools[pool].model)


def route(spec: JobSpec, settings: Settings) -> Route:
    """Resolve ``spec`` against ``settings`` (see :class:`Router`; raises :class:`NoRoute`)."""
    return Router(settings).route(spec)

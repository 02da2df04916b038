"""What the pusher needs of a translator, and the real one over pilot.translate.

The pusher calls translation through these protocols, a seam so tests can make one view's
translation fail or count calls; ``IstioTranslator`` is the one app.py passes.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from pilot.cache.snapshot import Snapshot
from pilot.config.store import StoreSnapshot
from pilot.translate.context import PushContext
from pilot.translate.proxy import Proxy, ProxyView
from pilot.translate.snapshot import build_snapshot
from pilot.translate.views import same_views, view_of

__all__ = [
    "IncrementalTranslator",
    "IstioTranslator",
    "StableViewsTranslator",
    "Translator",
    "VersionedContext",
    "ViewingTranslator",
]


class VersionedContext(Protocol):
    """What the pusher needs of a PushContext: the version string that identifies it."""

    @property
    def version(self) -> str: ...


class Translator(Protocol):
    """The two translate/ entry points a push calls; a seam so tests can make one view fail."""

    def build_context(self, snapshot: StoreSnapshot) -> VersionedContext: ...

    def build_snapshot(self, view: ProxyView, context: VersionedContext) -> Snapshot: ...


@runtime_checkable
class IncrementalTranslator(Protocol):
    """A translator that can build a view's snapshot from its previous one (and the context that
    one was built from), translating only what the config changed in between can affect."""

    def update_snapshot(
        self,
        view: ProxyView,
        context: VersionedContext,
        previous_context: VersionedContext,
        previous: Snapshot,
    ) -> Snapshot: ...


@runtime_checkable
class ViewingTranslator(Protocol):
    """A translator whose views depend on the config as well as the node. Without it a proxy's
    view is ``Proxy.view()``, from its node alone."""

    def view_of(self, proxy: Proxy, context: VersionedContext) -> ProxyView: ...


@runtime_checkable
class StableViewsTranslator(Protocol):
    """A viewing translator that can tell, without computing any view, that no proxy's view
    differs between two contexts (a push that edits routes alone moves no proxy)."""

    def same_views(self, older: VersionedContext, newer: VersionedContext) -> bool: ...


class IstioTranslator:
    """The real translator: ``PushContext.build`` and ``build_snapshot`` from pilot.translate.

    Each context is built from the one before (what did not change is reused, see
    ``PushContext.build``)."""

    def __init__(self) -> None:
        self._last: PushContext | None = None

    def build_context(self, snapshot: StoreSnapshot) -> VersionedContext:
        context = PushContext.build(snapshot, self._last)
        self._last = context
        return context

    def build_snapshot(self, view: ProxyView, context: VersionedContext) -> Snapshot:
        return build_snapshot(view, _push_context(context))

    def view_of(self, proxy: Proxy, context: VersionedContext) -> ProxyView:
        return view_of(proxy, _push_context(context))

    def same_views(self, older: VersionedContext, newer: VersionedContext) -> bool:
        return same_views(_push_context(older), _push_context(newer))

    def update_snapshot(
        self,
        view: ProxyView,
        context: VersionedContext,
        previous_context: VersionedContext,
        previous: Snapshot,
    ) -> Snapshot:
        return build_snapshot(view, _push_context(context), (_push_context(previous_context), previous))


def _push_context(context: VersionedContext) -> PushContext:
    if not isinstance(context, PushContext):
        raise TypeError(f"expected a PushContext, got {type(context).__name__}")
    return context

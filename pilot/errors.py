"""The one exception tree of pilot.

Bad user config is never raised: validation returns ``FieldError`` values (pilot.config.objects)
and the store keeps the last good object. Exceptions are for bugs, protocol violations and
lifecycle misuse::

    PilotError
    ├── ConfigError            config that cannot be loaded at all (unreadable dir, bad settings)
    │   └── SettingsError      a setting out of its bounds (pilot.settings), also a ValueError
    ├── TranslationError       a bug: the translator produced an inconsistent snapshot
    ├── XdsProtocolError       a client broke the xDS protocol (no node, unknown type URL on ADS)
    ├── LifecycleError         a component used out of order (started twice, used after stop)
    ├── JwksFetchError         a JSON Web Key Set could not be fetched, or what came is not one
    ├── AuthenticationError    a caller's credential (a token) is missing, malformed, expired or not ours
    └── CertificateRequestError  a CSR the mesh CA will not sign (malformed, weak key, lifetime too long)
        └── IdentityMismatchError  the CSR asks for an identity other than the caller's
"""

from __future__ import annotations


class PilotError(Exception):
    """Base class of every exception pilot raises on purpose."""


class ConfigError(PilotError):
    """Configuration that cannot be loaded at all (not a single bad object: that is data)."""


class SettingsError(ConfigError, ValueError):
    """A setting out of its bounds or contradicting another (raised by pilot.settings only).

    Also a ValueError: a bad number passed to a constructor is what ValueError means."""


class TranslationError(PilotError):
    """The translator produced an inconsistent snapshot; always a bug in pilot."""


class XdsProtocolError(PilotError):
    """An xDS client violated the protocol."""


class LifecycleError(PilotError):
    """A component was used out of order."""


class JwksFetchError(PilotError):
    """A JWKS (RequestAuthentication ``jwksUri``, or its issuer's discovery) could not be fetched, or
    the answer is not a JWKS; the message says why. pilot.sources.jwks reports it and keeps serving
    the last good keys."""


class AuthenticationError(PilotError):
    """A caller could not be authenticated; the message says why (it goes back to the caller)."""


class CertificateRequestError(PilotError):
    """A certificate signing request the mesh CA refuses; the message says why."""


class IdentityMismatchError(CertificateRequestError):
    """A CSR names an identity other than the one its caller authenticated as."""

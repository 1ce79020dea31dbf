"""postback_relay: the shared package of the postback relay (domain, services, adapters)."""

__version__ = "0.1.0"

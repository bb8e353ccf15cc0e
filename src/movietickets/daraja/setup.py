"""Builds the process's Daraja client from the settings, with the simulator when configured."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx

from movietickets.daraja import wire
from movietickets.daraja.client import DarajaClient, DarajaConfig
from movietickets.settings import Settings

# Imported only where the simulator is used: a service talking to Daraja does not carry it.
if TYPE_CHECKING:
    from movietickets.daraja.simulator import DarajaSimulator, SimulatorConfig

SIMULATOR_MOUNT = "/simulator/daraja"
SANDBOX_URL = "https://sandbox.safaricom.co.ke"


def shortcode(settings: Settings) -> str:
    return settings.mpesa_shortcode or wire.SANDBOX_SHORTCODE


def passkey(settings: Settings) -> str:
    configured = settings.mpesa_passkey
    return wire.SANDBOX_PASSKEY if configured is None else configured.get_secret_value()


def check_settings(settings: Settings) -> None:
    """Raises ValueError for settings Daraja would refuse (before the first payment does)."""
    if len(settings.mpesa_transaction_desc) > wire.TRANSACTION_DESC_MAX:
        raise ValueError(f"MPESA_TRANSACTION_DESC: at most {wire.TRANSACTION_DESC_MAX} characters")
    try:
        daraja_config(settings)
    except ValueError as exc:
        raise ValueError(f"MPESA_TRANSACTION_TYPE: {exc}") from None


def simulator_config(settings: Settings) -> SimulatorConfig:
    from movietickets.daraja.simulator import SimulatorConfig

    return SimulatorConfig(
        shortcode=shortcode(settings),
        passkey=passkey(settings),
        callback_delay_seconds=settings.simulator_callback_delay_seconds,
        push_delay_seconds=settings.simulator_push_delay_seconds,
        signing_key=settings.simulator_signing_key.get_secret_value().encode(),
    )


def daraja_config(settings: Settings) -> DarajaConfig:
    """Real credentials when configured; otherwise the in-process simulator's."""
    if settings.use_simulator:
        simulator = simulator_config(settings)
        base_url = settings.mpesa_base_url or settings.base_url + SIMULATOR_MOUNT
        key, secret = simulator.consumer_key, simulator.consumer_secret
    else:
        assert settings.mpesa_consumer_key is not None
        assert settings.mpesa_consumer_secret is not None
        base_url = settings.mpesa_base_url or SANDBOX_URL
        key = settings.mpesa_consumer_key.get_secret_value()
        secret = settings.mpesa_consumer_secret.get_secret_value()
    return DarajaConfig(
        base_url=base_url,
        consumer_key=key,
        consumer_secret=secret,
        shortcode=shortcode(settings),
        passkey=passkey(settings),
        transaction_type=settings.mpesa_transaction_type or wire.PAYBILL,
        party_b=settings.mpesa_party_b,
    )


def build_daraja(
    settings: Settings, http: httpx.AsyncClient
) -> tuple[DarajaClient, DarajaSimulator | None]:
    if not settings.use_simulator:
        return DarajaClient(http, daraja_config(settings)), None
    from movietickets.daraja.simulator import DarajaSimulator

    simulator = DarajaSimulator(simulator_config(settings), http=http)
    return DarajaClient(http, daraja_config(settings)), simulator

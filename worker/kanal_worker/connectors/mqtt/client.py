"""Connecting to the broker: one Paho MQTT 5 client per task, and errors that name the key
to fix."""

from __future__ import annotations

import os
import ssl
import struct
import tempfile
import threading
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from kanal_worker.api import ConfigError, ConnectError, RetriableError
from kanal_worker.config.kafka_clients import truststore_pem
from kanal_worker.connectors.mqtt.settings import MqttConnectionSettings, Server

SESSION_NEVER_EXPIRES = 0xFFFFFFFF
"""MQTT 5's Session Expiry Interval meaning 'never', MQTT 3.1.1's clean session off."""

CREDENTIALS_REFUSED = {134, 135}
"""CONNACK reason codes: bad user name or password, not authorized."""

OnConnect = Callable[[bool], None]
"""Called on the client's network thread after each successful (re)connect, with
whether the broker still had the session."""
OnRefused = Callable[[Exception], None]
"""Called on the client's network thread when the broker refuses a reconnect (the
credentials changed): the error the task should fail with."""


class AcknowledgingClient(mqtt.Client):
    """Paho's client with every acknowledgement in the application's hands (``ack``),
    QoS 2's PUBREC included.

    Paho answers a QoS 2 message with PUBREC at once and hands it over on PUBREL; from
    PUBREC on the broker sends only PUBREL again, never the message, and Paho keeps no
    state on disk: a crash between PUBREC and Kafka would lose the message. Here the
    message is handed over at once and ``ack(mid, 2)`` sends its PUBREC, once Kafka has
    it: a crash before brings the message again (at least once), and while the
    connection holds the broker sends it once (exactly once). PUBREL is answered with
    PUBCOMP at once, also for a message id a crashed predecessor acknowledged, which
    Paho would leave unanswered, holding the broker's window.
    """

    def __init__(self, client_id: str) -> None:
        super().__init__(CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=mqtt.MQTTv5, manual_ack=True)
        self._receiving = False
        self._held: int | None = None

    def _handle_publish(self) -> MQTTErrorCode:
        self._receiving = True
        try:
            result = super()._handle_publish()
        finally:
            self._receiving = False
        mid, self._held = self._held, None
        if mid is not None:
            with self._in_message_mutex:
                message = self._in_messages.pop(mid, None)
            if message is not None:
                self._handle_on_message(message)
        return result

    def _send_pubrec(self, mid: int) -> MQTTErrorCode:
        if self._receiving:  # Paho's own PUBREC on receipt: it waits for ack
            self._held = mid
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        return super()._send_pubrec(mid)

    def ack(self, mid: int, qos: int) -> MQTTErrorCode:
        if qos == 2:
            return super()._send_pubrec(mid)
        return super().ack(mid, qos)

    def _handle_pubrel(self) -> MQTTErrorCode:
        result = super()._handle_pubrel()
        if result != MQTTErrorCode.MQTT_ERR_SUCCESS:
            return result
        (mid,) = struct.unpack("!H", self._in_packet["packet"][:2])
        return self._send_pubcomp(mid)


def new_client(settings: MqttConnectionSettings, client_id: str, *, manual_ack: bool = False
               ) -> mqtt.Client:
    """A client; with ``manual_ack`` one that acknowledges only through ``ack``."""
    client = (AcknowledgingClient(client_id) if manual_ack else
              mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                          protocol=mqtt.MQTTv5))
    if settings.username:
        client.username_pw_set(settings.username,
                               settings.password.get_secret_value() or None)
    client.connect_timeout = settings.connect_timeout_seconds
    client.reconnect_delay_set(1, 30)
    if settings.servers[0].tls:  # all or none (the settings refuse a mixed list)
        client.tls_set_context(tls_context(settings))
    return client


def tls_context(settings: MqttConnectionSettings) -> ssl.SSLContext:
    """The TLS settings of ``mqtt.ssl.*``: Java trust and key stores read as Python can."""
    context = ssl.create_default_context()
    if settings.trust_store_path:
        try:
            pem = truststore_pem(settings.trust_store_path,
                                 settings.trust_store_password.get_secret_value() or None)
        except ConfigError as exc:
            raise ConfigError("mqtt.ssl.trust.store.path", exc.message) from None
        context.load_verify_locations(cadata=pem)
    if settings.key_store_path:
        _load_key_store(context, settings)
    return context


def _load_key_store(context: ssl.SSLContext, settings: MqttConnectionSettings) -> None:
    from cryptography.hazmat.primitives.serialization import (
        BestAvailableEncryption,
        Encoding,
        PrivateFormat,
        pkcs12,
    )

    key = "mqtt.ssl.key.store.path"
    store_password = settings.key_store_password.get_secret_value()
    try:
        with open(settings.key_store_path, "rb") as store:
            data = store.read()
        private_key, certificate, chain = pkcs12.load_key_and_certificates(
            data, store_password.encode() or None)
    except OSError as exc:
        raise ConfigError(key, f"cannot read {settings.key_store_path}: {exc.strerror}") from None
    except ValueError:
        raise ConfigError(key, f"{settings.key_store_path} cannot be read as a PKCS12 key "
                               "store; check mqtt.ssl.key.store.password, or convert a JKS "
                               "store with keytool -importkeystore -deststoretype PKCS12") \
            from None
    if private_key is None or certificate is None:
        raise ConfigError(key, f"{settings.key_store_path} holds no private key with its "
                               "certificate")
    # ssl loads key material from files only: a private file, the key encrypted
    secret = os.urandom(16).hex().encode()
    with tempfile.NamedTemporaryFile(suffix=".pem") as pem:
        pem.write(private_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8,
                                            BestAvailableEncryption(secret)))
        for cert in [certificate, *chain]:
            pem.write(cert.public_bytes(Encoding.PEM))
        pem.flush()
        context.load_cert_chain(pem.name, password=secret)


def connect(client: mqtt.Client, settings: MqttConnectionSettings,
            on_connect: OnConnect | None = None,
            on_disconnect: Callable[[], None] | None = None,
            receive_maximum: int | None = None,
            on_refused: OnRefused | None = None) -> Server:
    """Connect to the first broker of ``mqtt.server.uri`` that answers and start the
    client's network thread, which reconnects by itself afterwards. Raises ConfigError
    for refused credentials and RetriableError when no broker can be reached."""
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = 0 if settings.clean_session else SESSION_NEVER_EXPIRES
    if receive_maximum is not None:
        properties.ReceiveMaximum = receive_maximum
    answered = threading.Event()
    outcome: list[ReasonCode] = []

    def connected(_client: mqtt.Client, _userdata: Any, flags: mqtt.ConnectFlags,
                  reason: ReasonCode, _properties: Properties | None) -> None:
        if not answered.is_set():
            outcome.append(reason)
            answered.set()
        elif reason.is_failure and on_refused is not None:
            on_refused(refusal(reason, settings.server_uri))
        if not reason.is_failure and on_connect is not None:
            on_connect(flags.session_present)

    def disconnected(*_args: Any) -> None:
        if on_disconnect is not None:
            on_disconnect()

    client.on_connect = connected
    client.on_disconnect = disconnected
    failures = []
    for target in settings.servers:
        try:
            client.connect(target.host, target.port, settings.keepalive_seconds,
                           clean_start=settings.clean_session, properties=properties)
        except ssl.SSLCertVerificationError as exc:
            raise ConfigError("mqtt.ssl.trust.store.path",
                              f"the broker {target} presented a certificate this client does "
                              f"not trust ({exc.verify_message}); set the trust store of the "
                              "broker's certificate authority") from None
        except (OSError, ssl.SSLError) as exc:
            failures.append(f"{target}: {exc}")
            continue
        client.loop_start()
        if not answered.wait(settings.connect_timeout_seconds):
            client.loop_stop()
            failures.append(f"{target}: no answer to CONNECT within "
                            f"{settings.connect_timeout_seconds}s")
            continue
        reason = outcome[0]
        if reason.is_failure:
            client.loop_stop()
            client.disconnect()
            raise refusal(reason, str(target))
        return target
    raise RetriableError(f"cannot reach any broker of mqtt.server.uri ({'; '.join(failures)}); "
                         "check the addresses and that the broker runs")


def refusal(reason: ReasonCode, broker: object) -> ConfigError | ConnectError:
    """The error for a CONNACK that refused the client."""
    if reason.value in CREDENTIALS_REFUSED:
        return ConfigError("mqtt.password", f"the broker {broker} refused the credentials "
                                            f"({reason}); check mqtt.username and mqtt.password")
    return ConnectError(f"the broker {broker} refused the connection: {reason}")


def connection_problems(settings: MqttConnectionSettings) -> dict[str, list[str]]:
    """What stops a task from connecting, by key, for ``validate``: unreachable brokers
    and refused credentials."""
    probe = settings.model_copy(update={"clean_session": True,
                                        "connect_timeout_seconds":
                                            min(settings.connect_timeout_seconds, 10)})
    try:
        client = new_client(probe, f"kanal-validate-{os.urandom(4).hex()}")
        connect(client, probe)
    except ConfigError as exc:
        return {exc.key or "mqtt.server.uri": [exc.message]}
    except ConnectError as exc:
        return {"mqtt.server.uri": [str(exc)]}
    client.disconnect()
    client.loop_stop()
    return {}


def subscribe_error(reason: ReasonCode, topic: str) -> str | None:
    """Why the broker refused a subscription, or None."""
    if not reason.is_failure:
        return None
    return (f"the broker refused the subscription to {topic!r} ({reason}); check "
            "mqtt.topics and that mqtt.username may subscribe to it")

"""The official Pusher server SDK for Python (PyPI `pusher`, pinned in
tests/python/requirements.txt) against a real wsd: trigger, trigger_batch,
channels_info, channel_info, authenticate, and a refused signature.

Usage: sdk.py HOST PORT SOCKET_ID, where SOCKET_ID is a connection that
tests/pusher.rs holds subscribed to `lobby`; it checks the events there.
Prints `ok - ...` per check.
"""

import hashlib
import hmac
import json
import sys

import pusher
from pusher.errors import PusherBadAuth

APP_ID, KEY, SECRET = "1001", "wsd-test-key", "wsd-test-secret-0123456789"


def client(secret=SECRET):
    return pusher.Pusher(
        app_id=APP_ID, key=KEY, secret=secret, ssl=False, host=sys.argv[1], port=int(sys.argv[2])
    )


def main():
    socket_id = sys.argv[3]
    sdk = client()
    assert sdk.trigger("lobby", "from-python", {"n": 1}) == {}, "trigger"
    print("ok - trigger accepted")
    sdk.trigger_batch([{"channel": "lobby", "name": "batched", "data": {"n": 2}}])
    print("ok - trigger_batch accepted")
    info = sdk.channels_info(attributes=["subscription_count"])
    assert info["channels"]["lobby"]["subscription_count"] == 1, info
    print("ok - channels_info lists lobby")
    one = sdk.channel_info("lobby", attributes=["subscription_count"])
    assert one == {"occupied": True, "subscription_count": 1}, one
    print("ok - channel_info: occupied, one subscription")
    auth = sdk.authenticate(channel="private-x", socket_id=socket_id)
    signature = hmac.new(
        SECRET.encode(), f"{socket_id}:private-x".encode(), hashlib.sha256
    ).hexdigest()
    assert auth == {"auth": f"{KEY}:{signature}"}, auth
    print("ok - authenticate signs a private channel")
    try:
        client("not-the-secret-0123456789").trigger("lobby", "never", {})
    except PusherBadAuth as e:
        assert "signature" in str(e), e
        print("ok - a wrong secret is refused (401)")
    else:
        raise AssertionError("a wrong secret was accepted")


if __name__ == "__main__":
    main()

"""A local Twilio-compatible server for the test suite and the benchmarks."""
from .server import CallbackSink, FakeMessage, FakeTwilio, ReceivedWebhook, SignedRequest

__all__ = ["CallbackSink", "FakeMessage", "FakeTwilio", "ReceivedWebhook", "SignedRequest"]

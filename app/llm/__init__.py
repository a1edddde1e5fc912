"""Talking to language models over HTTP: the OpenAI-compatible chat client and a fake server for tests."""

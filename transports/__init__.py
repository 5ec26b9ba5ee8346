"""Transports: each serves a ChatService over some wire and offers a ChatClient for it."""

"""Live delivery: Socket.IO (OpenHands V0 protocol), plain WebSocket and Server-Sent
Events. All three are the same thing underneath: one log subscription per client, from
the event after the one it last saw."""

"""What tests share: engines and fakes, tiny graphs, speech checks, clients. Never a test module."""

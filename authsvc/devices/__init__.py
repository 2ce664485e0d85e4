"""Guest accounts of game clients: a device signs in to an account made on its first
use (no username, email or password yet), and the account later gains credentials or
other devices. Wired by `authsvc.app._setup_devices`."""

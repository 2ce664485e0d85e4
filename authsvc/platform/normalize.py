"""The one normalisation used for every claim key, on write and on lookup.

Usernames are ASCII ([A-Za-z0-9_]), so lowercasing is exact. Emails are NFC-normalised
and lowercased (str.lower, not casefold: casefold would merge addresses such as
'strasse' and 'straße' that mail servers treat as different)."""

import unicodedata


def username_lc(username: str) -> str:
    return username.lower()


def email_lc(email: str) -> str:
    return unicodedata.normalize("NFC", email.strip()).lower()


def normalizer(field: str):
    """The normalisation of a claimed field: 'username' or 'email'."""
    return {"username": username_lc, "email": email_lc}[field]

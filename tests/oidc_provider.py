"""A real OpenID provider for tests: panva's `oidc-provider` (npm) in a Node process on a
free loopback port, plus a browser-like driver of its authorization-code flow.

The Node side is tests/oidc_provider/server.mjs; its packages install with
`npm ci --prefix tests/oidc_provider`. Without node or those packages the fixture fails
loudly: the OIDC tests never skip.

    provider = OidcProvider(tmp_dir).start()
    provider.add_client("authsvc", "s3cret", ["http://127.0.0.1:8080/cb"])
    provider.add_account("alice", sub="a-1", email="a@example.com", email_verified=True)
    result = await run_code_flow(provider.authorize_url("authsvc", redirect_uri, ...),
                                 redirect_uri, login="alice")
    result.code, result.state

State (clients, accounts, signing keys) lives in this object, so `stop()` then `start()`
brings the same provider back on the same port; what the process held in memory (codes,
sessions, grants) is lost, as a crashed provider loses it."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, quote_plus, urlencode, urljoin, urlsplit

import aiohttp

from .redis_proc import free_port

HERE = Path(__file__).resolve().parent / "oidc_provider"
SCRIPT = HERE / "server.mjs"
INSTALL_HINT = "run `npm ci --prefix tests/oidc_provider` (Node.js 18 or later and npm needed)"


def _node_bin() -> str:
    node = shutil.which("node")
    if not node:
        raise RuntimeError(f"node not found: the OIDC tests need a real provider; {INSTALL_HINT}")
    return node


def _check_installed() -> None:
    wanted = json.loads((HERE / "package.json").read_text())["dependencies"]["oidc-provider"]
    installed = HERE / "node_modules" / "oidc-provider" / "package.json"
    if not installed.exists():
        raise RuntimeError(f"the npm package oidc-provider is not installed: {INSTALL_HINT}")
    version = json.loads(installed.read_text())["version"]
    if version != wanted:
        raise RuntimeError(
            f"oidc-provider {version} is installed but package.json pins {wanted}: {INSTALL_HINT}"
        )


def pkce_pair() -> tuple[str, str]:
    """(code_verifier, S256 code_challenge)."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class OidcProvider:
    def __init__(
        self,
        directory: Path,
        *,
        port: int | None = None,
        conform_id_token_claims: bool = False,
        ttl: dict[str, int] | None = None,
    ) -> None:
        self.dir = Path(directory)
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        self._state: dict = {
            "clients": [],
            "accounts": {},
            "keys": [],
            "conform_id_token_claims": conform_id_token_claims,
            "ttl": ttl or {},
        }
        self.started_in: float | None = None  # seconds the last start() took

    # -- the process ---------------------------------------------------------------------

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def log(self) -> str:
        path = self.dir / "provider.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self, timeout: float = 20) -> OidcProvider:
        if self.running:
            return self
        node = _node_bin()
        _check_installed()
        began = time.monotonic()
        self.dir.mkdir(parents=True, exist_ok=True)
        config = self.dir / "provider.json"
        config.write_text(json.dumps(self._state))
        log = (self.dir / "provider.log").open("ab")
        try:
            self.proc = subprocess.Popen(
                [node, str(SCRIPT), "--port", str(self.port), "--config", str(config)],
                cwd=HERE,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        finally:
            log.close()
        deadline = began + timeout
        while True:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                raise RuntimeError(f"the OIDC provider exited ({code}):\n{self.log}")
            try:
                with urllib.request.urlopen(self.discovery_url, timeout=1) as resp:
                    if json.load(resp)["issuer"] == self.issuer:
                        break
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the OIDC provider did not answer in {timeout} s:\n{self.log}")
            time.sleep(0.02)
        self.started_in = time.monotonic() - began
        self._sync(self._admin("GET", "state"))  # the keys it generated, kept for a restart
        return self

    def stop(self) -> None:
        """The provider goes down: its port refuses connections until start()."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> OidcProvider:
        self.stop()
        return self.start()

    # -- what it knows -------------------------------------------------------------------

    def add_client(
        self,
        client_id: str,
        client_secret: str,
        redirect_uris: list[str],
        *,
        auth_method: str = "client_secret_basic",
    ) -> dict:
        """Register (or replace) a confidential client. `auth_method` is the one
        token_endpoint_auth_method the provider then accepts from it:
        client_secret_basic or client_secret_post."""
        client = {
            "client_id": client_id,
            "client_secret": client_secret,
            "redirect_uris": list(redirect_uris),
            "token_endpoint_auth_method": auth_method,
        }
        self._state["clients"] = [
            c for c in self._state["clients"] if c["client_id"] != client_id
        ] + [client]
        if self.running:
            self._sync(self._admin("POST", "clients", client))
        return client

    def add_account(
        self,
        login: str,
        *,
        sub: str | None = None,
        email: str | None = None,
        email_verified: bool | None = None,
        username: str | None = None,
        name: str | None = None,
        roles: list[str] | None = None,
    ) -> dict:
        """The account the login name `login` signs in to (any password is accepted).
        Claims left None are absent from the tokens; `username` is preferred_username.
        A login name never added signs in as sub=<login>, preferred_username=<login>."""
        account = {"login": login, "sub": sub or login}
        for claim, value in (
            ("email", email),
            ("email_verified", email_verified),
            ("preferred_username", username),
            ("name", name),
            ("roles", roles),
        ):
            if value is not None:
                account[claim] = value
        self._state["accounts"][login] = {k: v for k, v in account.items() if k != "login"}
        if self.running:
            self._sync(self._admin("POST", "accounts", account))
        return account

    @property
    def kids(self) -> list[str]:
        """The kids the JWKS publishes; the first one signs."""
        return [k["kid"] for k in self._state["keys"]]

    def rotate_key(self, *, drop_old: bool = False) -> str:
        """A new RS256 key signs from now on; the old ones stay in the JWKS unless
        `drop_old`. Returns the new kid."""
        answer = self._admin("POST", "keys/rotate", {"drop_old": drop_old})
        self._sync(answer)
        return answer["kid"]

    def retire_old_keys(self) -> None:
        """Drop every published key but the current signing one."""
        self._sync(self._admin("POST", "keys/retire", {}))

    def set_delay(self, seconds: float, path: str = "/") -> None:
        """Hold each request whose path starts with `path` for `seconds` before it is
        answered (a slow provider); 0 turns it off."""
        self._admin("POST", "delay", {"seconds": seconds, "path": path})

    def tamper_next_id_token(
        self,
        claims: dict | None = None,
        *,
        header: dict | None = None,
        unknown_key: bool = False,
        hmac_secret: str | None = None,
    ) -> None:
        """The next token response's ID token comes back re-signed with `claims` changed
        (None deletes a claim) and `header` fields changed: by the current key, by a key
        the JWKS never publishes (`unknown_key`), unsigned (header alg "none"), or HS256
        with `hmac_secret`. One-shot."""
        body: dict = {"claims": claims or {}, "header": header or {}, "unknown_key": unknown_key}
        if hmac_secret is not None:
            body["hmac_secret"] = hmac_secret
        self._admin("POST", "tamper", body)

    def reset_controls(self) -> None:
        """Delay and tampering off (clients, accounts and keys stay)."""
        if self.running:
            self._admin("POST", "reset", {})

    def discovery(self) -> dict:
        with urllib.request.urlopen(self.discovery_url, timeout=5) as resp:
            return json.load(resp)

    def jwks(self) -> dict:
        with urllib.request.urlopen(f"{self.issuer}/jwks", timeout=5) as resp:
            return json.load(resp)

    def authorize_url(
        self,
        client_id: str,
        redirect_uri: str,
        *,
        state: str | None,
        nonce: str | None,
        code_challenge: str | None,
        scope: str = "openid email profile",
        **extra: str,
    ) -> str:
        """The authorization request a relying party would redirect to (None leaves a
        parameter out)."""
        params = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "scope": scope,
            "state": state,
            "nonce": nonce,
            "code_challenge": code_challenge,
            "code_challenge_method": "S256",
            **extra,
        }
        return f"{self.issuer}/auth?{urlencode({k: v for k, v in params.items() if v is not None})}"

    def _admin(self, method: str, path: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"{self.issuer}/__test__/{path}",
            data=data,
            method=method,
            headers={"content-type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return json.load(resp)
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"provider test control {path}: {e.code} {e.read()!r}") from e

    def _sync(self, snapshot: dict) -> None:
        for name in ("keys", "clients", "accounts"):
            self._state[name] = snapshot[name]


async def exchange_code(
    provider: OidcProvider,
    client: dict,
    code: str,
    code_verifier: str,
    *,
    redirect_uri: str | None = None,
    session: aiohttp.ClientSession | None = None,
    request_timeout: float = 10,
) -> tuple[int, dict]:
    """POST the code to the token endpoint as the relying party would, authenticating
    the way `client` (from add_client) is registered for. Returns (status, JSON body).

    client_secret_basic form-encodes id and secret before base64 (RFC 6749 2.3.1): the
    provider refuses a secret with `%` or `+` sent raw, as aiohttp.BasicAuth sends it."""
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "code_verifier": code_verifier,
        "redirect_uri": redirect_uri or client["redirect_uris"][0],
    }
    headers = {}
    if client["token_endpoint_auth_method"] == "client_secret_post":
        data |= {"client_id": client["client_id"], "client_secret": client["client_secret"]}
    else:
        pair = f"{quote_plus(client['client_id'])}:{quote_plus(client['client_secret'])}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
    own = session is None
    if own:
        session = aiohttp.ClientSession()
    try:
        async with session.get(provider.discovery_url) as resp:
            token_endpoint = (await resp.json())["token_endpoint"]
        async with session.post(
            token_endpoint,
            data=data,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=request_timeout),
        ) as resp:
            return resp.status, await resp.json()
    finally:
        if own:
            await session.close()


# -- a browser on the code flow -----------------------------------------------------------


@dataclass
class FlowResult:
    """Where the provider sent the browser back: the redirect_uri with code and state
    (or error and error_description), not followed."""

    url: str
    params: dict[str, str]
    steps: list[str] = field(default_factory=list)  # method + URL of each request made

    @property
    def code(self) -> str | None:
        return self.params.get("code")

    @property
    def state(self) -> str | None:
        return self.params.get("state")

    @property
    def error(self) -> str | None:
        return self.params.get("error")


class FlowError(AssertionError):
    """The provider answered something a browser could not go on from (for instance
    its error page, shown instead of redirecting when the redirect_uri is wrong)."""

    def __init__(self, message: str, status: int | None = None, text: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.text = text  # the page as text


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        self._skip += tag in ("style", "script", "title")

    def handle_endtag(self, tag):
        self._skip -= tag in ("style", "script", "title")

    def handle_data(self, data):
        if not self._skip and data.strip():
            self.parts.append(data.strip())


def page_text(html: str) -> str:
    parser = _Text()
    parser.feed(html)
    return " ".join(parser.parts)


class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict] = []
        self._open: dict | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self._open = {
                "action": a.get("action") or "",
                "method": (a.get("method") or "get").lower(),
                "fields": {},
            }
            self.forms.append(self._open)
        elif tag in ("input", "button") and self._open is not None and a.get("name"):
            if a.get("type") in ("checkbox", "radio") and "checked" not in a:
                return
            self._open["fields"].setdefault(a["name"], a.get("value") or "")

    def handle_endtag(self, tag):
        if tag == "form":
            self._open = None


def _endpoint(url: str) -> tuple[str, str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc, parts.path


def parse_forms(html: str) -> list[dict]:
    """Every <form> of a page: its action, method and named fields with their values."""
    parser = _Forms()
    parser.feed(html)
    return parser.forms


async def run_code_flow(
    authorize_url: str,
    redirect_uri: str,
    *,
    login: str,
    password: str = "any password",
    consent: bool = True,
    session: aiohttp.ClientSession | None = None,
    max_steps: int = 12,
) -> FlowResult:
    """Drive the provider's login and consent pages as a browser would: GET the
    authorization URL, follow redirects, fill the login form (`login`, `password`),
    submit the consent form (or abort it when `consent` is false), until the provider
    redirects to `redirect_uri`, and return that redirect without following it.

    Pass a `session` to keep the provider's cookies between flows (a second flow then
    skips the login, and the consent once given); its cookie jar must accept cookies
    from IP addresses: aiohttp.CookieJar(unsafe=True)."""
    own = session is None
    if own:
        session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    steps: list[str] = []
    try:
        method, url, data = "GET", authorize_url, None
        for _ in range(max_steps):
            if _endpoint(url) == _endpoint(redirect_uri):
                query = parse_qs(urlsplit(url).query)
                return FlowResult(url, {k: v[0] for k, v in query.items()}, steps)
            steps.append(f"{method} {url}")
            async with session.request(
                method, url, data=data, allow_redirects=False, timeout=aiohttp.ClientTimeout(10)
            ) as resp:
                body = await resp.text()
                if resp.status in (301, 302, 303, 307, 308):
                    url = urljoin(url, resp.headers["Location"])
                    method, data = "GET", None
                    continue
                if resp.status != 200:
                    text = page_text(body)
                    raise FlowError(
                        f"{method} {url} answered {resp.status}: {text[:2000]}", resp.status, text
                    )
            forms = [f for f in parse_forms(body) if f["method"] == "post"]
            if not forms:
                text = page_text(body)
                raise FlowError(f"{url} answered a page with no form: {text[:2000]}", 200, text)
            form = forms[0]
            fields = dict(form["fields"])
            if fields.get("prompt") == "login" or "login" in fields:
                fields["login"] = login
                fields["password"] = password
            elif not consent:
                abort = urljoin(url, urlsplit(url).path.rstrip("/") + "/abort")
                method, url, data = "GET", abort, None
                continue
            method, url, data = "POST", urljoin(url, form["action"]), fields
        raise FlowError(f"no redirect to {redirect_uri} after {max_steps} steps: {steps}")
    finally:
        if own:
            await session.close()

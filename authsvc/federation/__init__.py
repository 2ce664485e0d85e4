"""Sign-in through outside OpenID providers: providers kept as data (admin routes, the
public list), the authorization-code flow with PKCE (`service.SignInService`), linking
identities to accounts, and the HTTP client that talks to the providers (`client`).
Wired by `authsvc.app._setup_oidc`."""

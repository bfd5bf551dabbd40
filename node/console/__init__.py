"""The MLAX web console: liaison officers, supervisors and auditors work in a browser.

`mlax console --credential alice.json` serves it on 127.0.0.1 for one officer. It talks
to the node only through the officer SDK (node.client) with that officer's own mTLS
credential, never to the node's database, so everything it does is authorised, ledgered
and limited exactly as the CLI is. Server-rendered pages (Starlette and Jinja2), one small
script of our own for transfer progress, no CDN: docs/console.md and ADR 0014.

Modules: `app` (the application and the page wrapper), `security` (sign-in, sessions,
CSRF, headers, body limits), `forms` (web forms from exchange.forms' field tables),
`server` (listening and uvicorn), `pages/` (one module per area).
"""

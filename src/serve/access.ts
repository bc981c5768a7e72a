// Who may use the server. Routing and the access checks must read the same path, or an
// encoding the router undoes and the check does not (`/%76%31/models`, an absolute-form
// target `http://x/v1/models`) slips past the key. So the request target is normalised once,
// before routing (Fastify's rewriteUrl), into a form the router maps back to itself; the key
// check then asks the route the router matched whether it is public (deny by default), and
// never looks at the URL. Without a key, a Host allow-list stops DNS rebinding: a page on
// evil.example that re-points its name at 127.0.0.1 still sends `Host: evil.example`.
// Small enough to write here: no npm package does both target normalisation and host
// checks for Fastify (@fastify/* has neither).
import { timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';
import path from 'node:path';
import { ApiError } from './openai.js';

/** A request target as routing and the checks see it. */
export interface RequestTarget {
  /** Decoded, dot segments resolved, duplicate slashes merged: what the route is chosen by. */
  path: string;
  /** The raw query string with its `?`, or ''. */
  query: string;
  /** The authority of an absolute-form target (`http://HOST/...`), which names the host too. */
  authority?: string;
  /** Why the target cannot be served (answered 400 before any route runs). */
  error?: string;
}

const CONTROL = /[\u0000-\u001f\u007f]/;

/**
 * Normalises a raw request target (origin form `/a/b?q`, or absolute form
 * `http://host/a/b?q`). Never throws: a target that cannot be read comes back with `error`.
 */
export function normaliseTarget(raw: string): RequestTarget {
  let rawPath = raw,
    query = '',
    authority: string | undefined;
  if (!raw.startsWith('/')) {
    if (!/^https?:\/\//i.test(raw))
      return { path: '/', query: '', error: `request target ${JSON.stringify(raw.slice(0, 80))} is neither a path nor an http(s) URL` };
    let u: URL;
    try {
      u = new URL(raw);
    } catch {
      return { path: '/', query: '', error: `request target ${JSON.stringify(raw.slice(0, 80))} is not a valid URL` };
    }
    authority = u.host;
    rawPath = u.pathname;
    query = u.search;
  } else {
    const q = raw.search(/[?#]/);
    if (q >= 0) {
      if (raw[q] === '#') return { path: '/', query: '', error: 'a request target may not contain a fragment (#)' };
      query = raw.slice(q);
      rawPath = raw.slice(0, q);
    }
  }
  let decoded: string;
  try {
    decoded = decodeURIComponent(rawPath);
  } catch {
    return { path: '/', query: '', authority, error: 'the request path has a malformed percent-encoding' };
  }
  // a path that still holds `%` after decoding was encoded twice: whichever layer decodes it
  // again would see a different path than the one the checks saw
  if (decoded.includes('%')) return { path: '/', query: '', authority, error: 'the request path is percent-encoded more than once' };
  if (CONTROL.test(decoded)) return { path: '/', query: '', authority, error: 'the request path contains control characters' };
  // posix normalize resolves `.` / `..` (never above the root) and merges duplicate slashes
  const norm = path.posix.normalize(decoded.startsWith('/') ? decoded : `/${decoded}`);
  return { path: norm, query, authority };
}

/**
 * The URL handed to the router: the normalised path with every segment percent-encoded, so
 * the router's own decoding gives back exactly `target.path` (it holds no `%` of its own).
 */
export function routerUrl(target: RequestTarget): string {
  return target.path.split('/').map(encodeURIComponent).join('/') + target.query;
}

/** Host names a server without a key answers to: this machine's own names. */
export const LOCAL_HOSTS: readonly string[] = ['localhost', '127.0.0.1', '::1'];

/** The host part of a Host header / authority (`[::1]:8000` -> `::1`), lower case, or null. */
export function hostName(authority: string): string | null {
  let u: URL;
  try {
    u = new URL(`http://${authority}/`);
  } catch {
    return null;
  }
  // URL keeps userinfo and a path out of `hostname`; a header holding them is not a host
  if (u.username || u.password || u.pathname !== '/' || u.search || u.hash) return null;
  const h = u.hostname.toLowerCase().replace(/\.$/, '');
  return h.startsWith('[') ? h.slice(1, -1) : h;
}

/** Normalises allow-list entries the way Host headers are (ports ignored). */
export function allowedHostSet(extra: readonly string[] = []): Set<string> {
  const out = new Set<string>();
  for (const e of [...LOCAL_HOSTS, ...extra]) {
    const h = hostName(isIP(e) === 6 ? `[${e}]` : e);
    if (!h) throw new Error(`allowed host ${JSON.stringify(e)} is not a host name or IP address`);
    out.add(h);
  }
  return out;
}

/** Throws 403 unless every host the request names (Host header, absolute-form authority) is allowed. */
export function checkHost(req: IncomingMessage, target: RequestTarget, allowed: ReadonlySet<string>): void {
  const named = [req.headers.host, target.authority];
  if (named[0] === undefined) throw new ApiError(400, 'missing Host header', 'invalid_request_error', null, 'host_not_allowed');
  for (const a of named) {
    if (a === undefined) continue;
    const h = hostName(a);
    if (h === null || !allowed.has(h)) {
      throw new ApiError(
        403,
        `host ${JSON.stringify(a)} is not allowed: this server has no API key, so it answers only to ${[...allowed].join(', ')}. ` +
          'Start it with --allowed-hosts NAME to add the name clients use, or with --api-key',
        'invalid_request_error',
        null,
        'host_not_allowed',
      );
    }
  }
}

/** Throws 401 unless the request carries `Authorization: Bearer KEY`. */
export function checkKey(authorization: string | undefined, key: string): void {
  const m = /^Bearer\s+(.+)$/i.exec(authorization ?? '');
  const given = Buffer.from(m?.[1].trim() ?? ''),
    want = Buffer.from(key);
  if (given.length !== want.length || !timingSafeEqual(given, want)) {
    throw new ApiError(
      401,
      m ? 'Incorrect API key provided.' : 'Missing API key: send "Authorization: Bearer KEY".',
      'invalid_request_error',
      null,
      'invalid_api_key',
    );
  }
}

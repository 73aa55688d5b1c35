import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TlsMaterial {
  dir: string;
  caFile: string;
  certFile: string;
  keyFile: string;
}

/**
 * A throwaway CA and a server certificate for 127.0.0.1/localhost, made with the openssl CLI, for
 * redis-server's TLS port in the local stack and the tests. Valid for a day; never reused.
 */
export function generateTlsMaterial(): TlsMaterial {
  const dir = mkdtempSync(join(tmpdir(), 'redis-tls-'));
  const f = (name: string): string => join(dir, name);
  const openssl = (...args: string[]): void => {
    execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  };
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl('req', '-x509', ...ec, '-days', '1', '-subj', '/CN=local-redis-ca', '-keyout', f('ca.key'), '-out', f('ca.crt'));
  openssl('req', ...ec, '-subj', '/CN=localhost', '-keyout', f('server.key'), '-out', f('server.csr'));
  writeFileSync(f('san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  openssl(
    'x509',
    '-req',
    '-in',
    f('server.csr'),
    '-CA',
    f('ca.crt'),
    '-CAkey',
    f('ca.key'),
    '-CAcreateserial',
    '-days',
    '1',
    '-extfile',
    f('san.ext'),
    '-out',
    f('server.crt'),
  );
  return { dir, caFile: f('ca.crt'), certFile: f('server.crt'), keyFile: f('server.key') };
}

/** redis-server arguments for a TLS port with this material (clients need not present certificates). */
export function redisTlsArgs(tls: TlsMaterial, tlsPort: number): string[] {
  return [
    '--tls-port',
    String(tlsPort),
    '--tls-cert-file',
    tls.certFile,
    '--tls-key-file',
    tls.keyFile,
    '--tls-ca-cert-file',
    tls.caFile,
    '--tls-auth-clients',
    'no',
  ];
}

import { ValidationError } from './errors.ts';

const NUMBER = /^([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/;

/**
 * DynamoDB stores numbers by value and answers in one spelling: plain decimal, no exponent, no
 * leading zeros, no trailing fractional zeros, "0" for zero ("1.50" → "1.5", "1E2" → "100").
 * The cache must hold the same spelling (G4) and key the same value once (1 and 1.0 are one key),
 * so every number the library writes or keys on goes through here. Enforces DynamoDB's limits:
 * 38 significant digits, magnitude from 1e-130 to below 1e126.
 */
export function normalizeNumber(text: string, field: string): string {
  const m = NUMBER.exec(text);
  if (!m || ((m[2] ?? '') === '' && (m[3] ?? '') === '')) {
    throw new ValidationError(field, `'${text}' is not a number`);
  }
  const frac = m[3] ?? '';
  let digits = ((m[2] ?? '') + frac).replace(/^0+/, '');
  if (digits === '') return '0';
  let exp = Number(m[4] ?? '0') - frac.length;
  const significant = digits.replace(/0+$/, '');
  exp += digits.length - significant.length;
  digits = significant;
  if (digits.length > 38) throw new ValidationError(field, `'${text}' has more than 38 significant digits`);
  const magnitude = exp + digits.length - 1;
  if (magnitude > 125 || magnitude < -130) {
    throw new ValidationError(field, `'${text}' is outside DynamoDB's number range (1e-130 to 9.99e125)`);
  }
  let plain: string;
  if (exp >= 0) plain = digits + '0'.repeat(exp);
  else if (-exp < digits.length) plain = `${digits.slice(0, exp)}.${digits.slice(exp)}`;
  else plain = `0.${'0'.repeat(-exp - digits.length)}${digits}`;
  return m[1] === '-' ? `-${plain}` : plain;
}

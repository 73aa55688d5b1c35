import { ValidationError } from './errors.ts';

/**
 * The longest number spelling the library reads. DynamoDB stores 38 significant digits with a
 * magnitude from 1e-130 to below 1e126, so the longest spelling without a redundant character is
 * the plain decimal of a 38-digit number at the bottom of the range: `-0.` + 129 zeros + 38 digits,
 * 170 characters (exponent spellings are shorter: `-1.<37 digits>e-130` is 45). Anything longer
 * only pads with zeros; 256 leaves room for the padding formatters add (`toFixed` pads up to 100
 * fraction digits) and keeps every number a small constant amount of work. Checked before any
 * pattern reads the text (issue 18: a stripping pattern was quadratic on `1000…0001`). DynamoDB
 * Local accepts padding of any length; refusing it here is deliberate (SECURITY.md, Known gaps).
 */
export const MAX_NUMBER_LENGTH = 256;

/** Linear: the three digit runs are separated by `.` and `e`, so no run can be matched two ways. */
const NUMBER = /^([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/;

const ZERO = 0x30;
const MINUS = 0x2d;
const DOT = 0x2e;

/*
 * DynamoDB's spelling: `-`?, then `0`, or `0.` and digits ending in a non-zero one, or a digit run
 * not starting with 0 optionally followed by `.` and digits ending in a non-zero one. Read in place
 * (sticky patterns from an offset: a body's numbers are not cut out to be checked) by parts, so
 * that where the significant digits start and end is known from where each part stops, with no
 * second pass over the digits. No quantifier inside another: each part reads its characters once,
 * plus, for the parts ending in a non-zero digit, one step back over the zeros that end the run
 * (issue 18: a body may hold thousands of 170-character spellings, `-0.` and 129 zeros leading).
 */
/**
 * `0.` and the zeros before the first significant digit (which must follow). The zeros are read
 * eight at a time, then up to seven (the same matches as `0*`: irregexp compares a literal block of
 * eight at once, half the time over the 129 zeros of the longest spelling; bounded after the blocks,
 * so a failing run of zeros is still read in linear time).
 */
const FRACTION_HEAD = /-?0\.(?:00000000)*0{0,7}(?=[1-9])/y;
/** Significant digits: from a non-zero digit to the last non-zero one of the run. */
const SIGNIFICANT = /[1-9](?:\d*[1-9])?/y;
/** An integer part not starting with 0. */
const INTEGER = /-?[1-9]\d*/y;
/** A fraction ending in a non-zero digit. */
const FRACTION = /\.\d*[1-9]/y;

/**
 * DynamoDB's spelling of a number it can store (not `-0`, at most 38 significant digits, the
 * leading one's power of ten from -130 to 125), read from `start`: its end and its significant
 * digits packed into one number (`spelledEnd`, `spelledDigits`: no object per number), or -1. Where
 * the spelling ends is for the caller to judge: in `1.50` it is `1.5`, which is no spelling of the
 * whole token once a `0` follows. At most one pass over the characters.
 */
export function readSpelledNumber(text: string, start: number): number {
  const sign = text.charCodeAt(start) === MINUS ? 1 : 0;
  if (text.charCodeAt(start + sign) === ZERO) {
    FRACTION_HEAD.lastIndex = start;
    if (!FRACTION_HEAD.test(text)) return sign === 0 ? packSpelled(start + 1, 0) : -1; // "0"; "-0" is not DynamoDB's
    const first = FRACTION_HEAD.lastIndex;
    SIGNIFICANT.lastIndex = first;
    SIGNIFICANT.test(text); // matches: FRACTION_HEAD looked ahead for its first digit
    const end = SIGNIFICANT.lastIndex;
    const high = start + sign + 1 - first; // the point's place minus the first digit's
    return end - first <= 38 && high >= -130 ? packSpelled(end, end - first) : -1;
  }
  INTEGER.lastIndex = start;
  if (!INTEGER.test(text)) return -1;
  const integerEnd = INTEGER.lastIndex;
  const high = integerEnd - start - sign - 1;
  if (high > 125) return -1;
  if (text.charCodeAt(integerEnd) === DOT) {
    FRACTION.lastIndex = integerEnd;
    if (FRACTION.test(text)) {
      const end = FRACTION.lastIndex;
      const digits = end - start - sign - 1;
      return digits <= 38 ? packSpelled(end, digits) : -1;
    }
  }
  // Trailing zeros of an integer are not significant (at most 125 of them: `high` is bounded).
  let last = integerEnd;
  while (text.charCodeAt(last - 1) === ZERO) last--;
  const digits = last - start - sign;
  return digits <= 38 ? packSpelled(integerEnd, digits) : -1;
}

/** The end and the significant digits (at most 38) in one number: 64 · end + digits. */
const packSpelled = (end: number, digits: number): number => end * 64 + digits;
/** Where the spelling readSpelledNumber found ends. */
export const spelledEnd = (read: number): number => Math.floor(read / 64);
/** Its significant digits. */
export const spelledDigits = (read: number): number => read % 64;

/**
 * The significant digits of `text` when it is already DynamoDB's spelling of a number it can store
 * (readSpelledNumber, spelling the whole text), else -1. No allocation: most numbers the library
 * meets are spelled so (its own output, DynamoDB's answers), and spell's general path splits and
 * rebuilds the text.
 */
export function canonicalDigits(text: string): number {
  if (text.length > MAX_NUMBER_LENGTH) return -1;
  const read = readSpelledNumber(text, 0);
  return read >= 0 && spelledEnd(read) === text.length ? spelledDigits(read) : -1;
}

/** Why a spelling is not a number DynamoDB can store (the text is quoted only once it is bounded). */
type Refusal = (text: string) => string;

const TOO_LONG: Refusal = (text) => `a number of ${text.length} characters is longer than any DynamoDB can store (${MAX_NUMBER_LENGTH})`;
const NOT_A_NUMBER: Refusal = (text) => `'${text}' is not a number`;
const TOO_MANY_DIGITS: Refusal = (text) => `'${text}' has more than 38 significant digits`;
const OUT_OF_RANGE: Refusal = (text) => `'${text}' is outside DynamoDB's number range (1e-130 to 9.99e125)`;

/**
 * DynamoDB stores numbers by value and answers in one spelling: plain decimal, no exponent, no
 * leading zeros, no trailing fractional zeros, "0" for zero ("1.50" → "1.5", "1E2" → "100").
 * The cache must hold the same spelling (G4) and key the same value once (1 and 1.0 are one key),
 * so every number the library writes or keys on goes through here. Enforces DynamoDB's limits:
 * 38 significant digits, magnitude from 1e-130 to below 1e126, and at most MAX_NUMBER_LENGTH
 * characters. The length is checked first and every later step is linear in the text.
 */
export function normalizeNumber(text: string, field: string): string {
  const spelled = spell(text);
  if (typeof spelled === 'string') return spelled;
  throw new ValidationError(field, spelled(text));
}

/**
 * normalizeNumber without the error: DynamoDB's spelling, or undefined when DynamoDB cannot store
 * the number. For callers that meet many numbers and decide later (a body of thousands of bad
 * numbers must not cost an exception each).
 */
export function tryNormalizeNumber(text: string): string | undefined {
  const spelled = spell(text);
  return typeof spelled === 'string' ? spelled : undefined;
}

function spell(text: string): string | Refusal {
  if (text.length > MAX_NUMBER_LENGTH) return TOO_LONG;
  // Most numbers the library meets are already spelled so (its own output, DynamoDB's answers).
  if (canonicalDigits(text) >= 0) return text;
  const m = NUMBER.exec(text);
  if (!m || ((m[2] ?? '') === '' && (m[3] ?? '') === '')) return NOT_A_NUMBER;
  const frac = m[3] ?? '';
  const all = (m[2] ?? '') + frac;
  // Leading and trailing zeros by index, not by pattern: one visit per character.
  let first = 0;
  while (first < all.length && all.charCodeAt(first) === ZERO) first++;
  if (first === all.length) return '0';
  let end = all.length;
  while (all.charCodeAt(end - 1) === ZERO) end--;
  const digits = all.slice(first, end);
  const exp = Number(m[4] ?? '0') - frac.length + (all.length - end);
  if (digits.length > 38) return TOO_MANY_DIGITS;
  const magnitude = exp + digits.length - 1;
  if (magnitude > 125 || magnitude < -130) return OUT_OF_RANGE;
  let plain: string;
  if (exp >= 0) plain = digits + '0'.repeat(exp);
  else if (-exp < digits.length) plain = `${digits.slice(0, exp)}.${digits.slice(exp)}`;
  else plain = `0.${'0'.repeat(-exp - digits.length)}${digits}`;
  return m[1] === '-' ? `-${plain}` : plain;
}

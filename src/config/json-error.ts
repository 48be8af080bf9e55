/**
 * Where a JSON text is broken, as an operator reads it: line and column (1-based) and V8's reason
 * without its "at position N" or the quoted text (which spans lines). V8 gives no position for
 * some errors ("Unexpected token 'x', "..." is not valid JSON"); the position is then found by
 * parsing ever longer prefixes: a prefix shorter than the error fails only at its end.
 */
export interface JsonErrorPlace {
  line: number;
  column: number;
  reason: string;
}

export function locateJsonError(text: string, error: SyntaxError): JsonErrorPlace {
  const reported = /\bat position (\d+)/.exec(error.message);
  const offset = reported ? Number(reported[1]) : firstBadOffset(text);
  return { ...lineAndColumn(text, offset), reason: reasonOf(error.message) };
}

/** "not valid JSON at line 3, column 5: Expected ',' or '}' after property value". */
export function describeJsonError(text: string, error: SyntaxError): string {
  const { line, column, reason } = locateJsonError(text, error);
  return `not valid JSON at line ${line}, column ${column}: ${reason}`;
}

function reasonOf(message: string): string {
  const token = /^Unexpected token '(.*?)', .* is not valid JSON$/s.exec(message);
  if (token) return `Unexpected token ${JSON.stringify(token[1])}`;
  return message.replace(/ in JSON at position \d+.*$/s, '').replace(/\s+/g, ' ').trim();
}

function lineAndColumn(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let lineStart = 0;
  const end = Math.min(offset, text.length);
  for (let i = 0; i < end; i++) {
    if (text.charCodeAt(i) === 10) {
      line++;
      lineStart = i + 1;
    }
  }
  return { line, column: end - lineStart + 1 };
}

/** The offset of the first character JSON.parse refuses (binary search over prefixes). */
function firstBadOffset(text: string): number {
  const failsBefore = (length: number): boolean => {
    try {
      JSON.parse(text.slice(0, length));
      return false;
    } catch (error) {
      const message = (error as Error).message;
      if (/Unexpected end of JSON input/.test(message)) return false;
      const at = /\bat position (\d+)/.exec(message);
      return !at || Number(at[1]) < length;
    }
  };
  // Only at its end (cut short): the error is past the last character.
  if (!failsBefore(text.length)) return text.length;
  // Smallest prefix length that fails somewhere before its end: its last character is the culprit.
  let low = 1;
  let high = text.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (failsBefore(middle)) high = middle;
    else low = middle + 1;
  }
  return Math.max(0, low - 1);
}

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { describeJsonError, locateJsonError } from './json-error.ts';

function place(text: string) {
  try {
    JSON.parse(text);
  } catch (error) {
    return locateJsonError(text, error as SyntaxError);
  }
  throw new Error('parsed');
}

test('line and column of the usual mistakes, 1-based, on the character refused', () => {
  const missingComma = '{\n    "mainServerIp": "127.0.0.1"\n    "mainServerPort": 8000\n}';
  assert.deepEqual(place(missingComma), { line: 3, column: 5, reason: "Expected ',' or '}' after property value" });
  const trailingComma = '{\n  "a": 1,\n}';
  assert.deepEqual(place(trailingComma), { line: 3, column: 1, reason: 'Expected double-quoted property name' });
  const singleQuotes = "{\n  'a': 1\n}";
  assert.equal(place(singleQuotes).line, 2);
  assert.equal(place(singleQuotes).column, 3);
});

test('an error V8 gives no position for is found by its prefixes, and the reason is one line without the text', () => {
  const text = '{\n  "usePublicAddress": tru\n}';
  const found = place(text);
  assert.equal(found.line, 2);
  assert.equal(found.column, 26, 'the character after "tru"');
  assert.match(found.reason, /^Unexpected token/);
  assert.doesNotMatch(found.reason, /\n|is not valid JSON/);
});

test('a text cut short points after its last character', () => {
  const text = '{\n  "a": 1';
  assert.deepEqual(place(text), { line: 2, column: 9, reason: "Expected ',' or '}' after property value" });
  assert.equal(describeJsonError(text, new SyntaxError('Unexpected end of JSON input')), 'not valid JSON at line 2, column 9: Unexpected end of JSON input');
});

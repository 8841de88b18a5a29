// The counter's logic under Node, without WebAssembly: `npm test`.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Counter, CounterError } from '../src/counter.js';

const text = (value) => new TextEncoder().encode(value);

test('adds, rejects and round-trips', () => {
  const counter = new Counter();
  assert.equal(counter.apply(text('add 5')), '5');
  assert.throws(() => counter.apply(text('add x')), CounterError);
  assert.throws(() => counter.apply(text('add 9223372036854775807')), CounterError);
  assert.equal(counter.query(text('get')), '5');
  const restored = Counter.restore(counter.snapshot());
  assert.equal(restored.query(text('')), '5');
  assert.throws(() => Counter.restore(text('garbage')), CounterError);
});

import canonicalizeReference from 'canonicalize'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { ProtocolError } from '../../protocol/errors.ts'
import { canonicalBytes, canonicalize, MAX_DEPTH, nestsTooDeep } from '../../protocol/jcs.ts'

function bitsToNumber(hex: string): number {
  return new DataView(Uint8Array.from(Buffer.from(hex, 'hex')).buffer).getFloat64(0, false)
}

describe('JCS (RFC 8785)', () => {
  it('reproduces the RFC 3.2.2 example output', () => {
    const input = JSON.parse(
      '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001], "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/", "literals": [null, true, false]}',
    )
    expect(canonicalize(input)).toBe(
      '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}',
    )
  })

  it('reproduces the RFC 3.2.3 property sorting example (UTF-16 code unit order)', () => {
    const input = JSON.parse(
      '{"\\u20ac": "Euro Sign", "\\r": "Carriage Return", "\\ufb33": "Hebrew Letter Dalet With Dagesh", "1": "One", "\\ud83d\\ude00": "Emoji: Grinning Face", "\\u0080": "Control", "\\u00f6": "Latin Small Letter O With Diaeresis"}',
    )
    // Read values in text order: JS objects would hoist the integer-like key "1".
    const values = [...canonicalize(input).matchAll(/:"([^"]*)"/g)].map((m) => m[1])
    expect(values).toEqual([
      'Carriage Return',
      'One',
      'Control',
      'Latin Small Letter O With Diaeresis',
      'Euro Sign',
      'Emoji: Grinning Face',
      'Hebrew Letter Dalet With Dagesh',
    ])
  })

  it('reproduces the RFC 3.2.4 UTF-8 bytes of the 3.2.2 example', () => {
    const input = {
      numbers: [333333333.3333333, 1e30, 4.5, 0.002, 1e-27],
      string: '€$\u000f\nA\'B"\\\\"/',
      literals: [null, true, false],
    }
    const hex = Buffer.from(canonicalBytes(input)).toString('hex').match(/../g)!.join(' ')
    expect(hex).toBe(
      '7b 22 6c 69 74 65 72 61 6c 73 22 3a 5b 6e 75 6c 6c 2c 74 72 75 65 2c 66 61 6c 73 65 5d 2c 22 6e 75 6d 62 65 72 73 22 3a 5b 33 33 33 33 33 33 33 33 33 2e 33 33 33 33 33 33 33 2c 31 65 2b 33 30 2c 34 2e 35 2c 30 2e 30 30 32 2c 31 65 2d 32 37 5d 2c 22 73 74 72 69 6e 67 22 3a 22 e2 82 ac 24 5c 75 30 30 30 66 5c 6e 41 27 42 5c 22 5c 5c 5c 5c 5c 22 2f 22 7d',
    )
  })

  it('serialises the RFC Appendix B IEEE 754 samples exactly', () => {
    const samples: [string, string][] = [
      ['0000000000000000', '0'],
      ['8000000000000000', '0'],
      ['0000000000000001', '5e-324'],
      ['8000000000000001', '-5e-324'],
      ['7fefffffffffffff', '1.7976931348623157e+308'],
      ['ffefffffffffffff', '-1.7976931348623157e+308'],
      ['4340000000000000', '9007199254740992'],
      ['c340000000000000', '-9007199254740992'],
      ['4430000000000000', '295147905179352830000'],
      ['44b52d02c7e14af5', '9.999999999999997e+22'],
      ['44b52d02c7e14af6', '1e+23'],
      ['44b52d02c7e14af7', '1.0000000000000001e+23'],
      ['444b1ae4d6e2ef4e', '999999999999999700000'],
      ['444b1ae4d6e2ef4f', '999999999999999900000'],
      ['444b1ae4d6e2ef50', '1e+21'],
      ['3eb0c6f7a0b5ed8c', '9.999999999999997e-7'],
      ['3eb0c6f7a0b5ed8d', '0.000001'],
      ['41b3de4355555553', '333333333.3333332'],
      ['41b3de4355555554', '333333333.33333325'],
      ['41b3de4355555555', '333333333.3333333'],
      ['41b3de4355555556', '333333333.3333334'],
      ['41b3de4355555557', '333333333.33333343'],
      ['becbf647612f3696', '-0.0000033333333333333333'],
      ['43143ff3c1cb0959', '1424953923781206.2'],
    ]
    for (const [bits, text] of samples) expect(canonicalize(bitsToNumber(bits)), bits).toBe(text)
    for (const bits of ['7fffffffffffffff', '7ff0000000000000']) {
      expect(() => canonicalize(bitsToNumber(bits))).toThrow(ProtocolError)
    }
  })

  it('rejects values with no canonical JSON form with NOT_CANONICAL', () => {
    const cyclic: Record<string, unknown> = {}
    cyclic.self = cyclic
    for (const bad of [
      Number.NaN,
      Infinity,
      undefined,
      () => 1,
      1n,
      new Date(0),
      '\ud800',
      { '\udc00': 1 },
      [1, , 2],
      cyclic,
      { a: undefined },
    ]) {
      try {
        canonicalize(bad)
        throw new Error(`accepted ${String(bad)}`)
      } catch (error) {
        expect(error).toBeInstanceOf(ProtocolError)
        expect((error as ProtocolError).code).toBe('NOT_CANONICAL')
      }
    }
  })

  it('property: agrees with the independent `canonicalize` package and is idempotent', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        const ours = canonicalize(value)
        expect(ours).toBe(canonicalizeReference(value))
        expect(canonicalize(JSON.parse(ours))).toBe(ours)
      }),
      { numRuns: 1000 },
    )
  })

  it('nestsTooDeep counts brackets outside strings only, up to MAX_DEPTH', () => {
    const nested = (n: number) => '['.repeat(n) + ']'.repeat(n)
    expect(nestsTooDeep(nested(MAX_DEPTH))).toBe(false)
    expect(nestsTooDeep(nested(MAX_DEPTH + 1))).toBe(true)
    expect(nestsTooDeep('{"a":'.repeat(MAX_DEPTH + 1) + '1' + '}'.repeat(MAX_DEPTH + 1))).toBe(true)
    // Inside a string, behind escaped quotes: text, not nesting.
    expect(nestsTooDeep(`{"k":"${'\\"['.repeat(300)}"}`)).toBe(false)
    // A string ending in an escaped backslash ends there: the brackets after it count.
    expect(nestsTooDeep(`["\\\\",${nested(300)}]`)).toBe(true)
    fc.assert(
      fc.property(fc.json({ maxDepth: 8 }), (text) => {
        expect(nestsTooDeep(text)).toBe(false)
      }),
      { numRuns: 300 },
    )
  })
})

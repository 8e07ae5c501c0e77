// The Markdown summary's table cells hold rights holders' own text: escaped, it stays text.
import { describe, expect, it } from 'vitest'
import { markdownCell } from '../../node/summary/markdown.ts'

describe('markdownCell', () => {
  it('escapes every character Markdown or HTML would act on, and keeps the text on one row', () => {
    const hostile = 'Ada <img src=x onerror=alert(1)> [site](javascript:alert(1)) | extra\n| row |'
    const cell = markdownCell(hostile)
    expect(cell).toBe(
      'Ada \\<img src=x onerror=alert\\(1\\)\\> \\[site\\]\\(javascript:alert\\(1\\)\\) \\| extra \\| row \\|',
    )
    // No markup character is left unescaped, and the escapes undo to the original text.
    expect(cell.replace(/\\[\\`*_{}[\]()<>#+!|~&]/g, '')).not.toMatch(/[\\`*_{}[\]()<>#+!|~&]/)
    expect(cell.replace(/\\(.)/g, '$1')).toBe(hostile.replace(/\n/g, ' '))
    expect(markdownCell('Ada Lovelace')).toBe('Ada Lovelace')
    expect(markdownCell(12)).toBe('12')
  })
})

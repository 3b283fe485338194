/**
 * The name prefixes a listing scans: those of the caller's allowed prefixes (`within`)
 * that meet the requested `prefix`, narrowed to it. Each is one key range; a range
 * nested in another is dropped (the outer one covers it), and the rest are disjoint and
 * returned in order, so scanning them one after another keeps the listing in name order.
 */
export function listingScopes(prefix: string, within: readonly string[]): string[] {
  const meeting = within.flatMap((w) => (prefix.startsWith(w) ? [prefix] : w.startsWith(prefix) ? [w] : []));
  return [...new Set(meeting)].sort().filter((p, i, all) => !all.slice(0, i).some((outer) => p.startsWith(outer)));
}

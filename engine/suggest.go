package engine

import "strings"

// suggest returns the names nearest to name by edit distance (case-insensitive), at most
// three, closest first: those within a third of name's length (at least 2 edits) and at
// most half of the longer name's, or that name is a prefix of or contains. It is for error messages ("did you mean …?").
func suggest(name string, names []string) []string {
	type cand struct {
		name string
		dist int
	}
	lower := strings.ToLower(name)
	limit := max(2, len([]rune(name))/3)
	var best []cand
	for _, n := range names {
		if n == name {
			continue
		}
		ln := strings.ToLower(n)
		d := editDistance(lower, ln)
		if (d > limit || 2*d > max(len(lower), len(ln))) && !(len(lower) >= 3 && strings.Contains(ln, lower)) {
			continue // too far, or more edits than half the name: not a typo of it
		}
		best = append(best, cand{n, d})
	}
	// Insertion sort: few candidates; ties keep the input order.
	for i := 1; i < len(best); i++ {
		for j := i; j > 0 && best[j].dist < best[j-1].dist; j-- {
			best[j], best[j-1] = best[j-1], best[j]
		}
	}
	out := make([]string, 0, min(3, len(best)))
	for _, c := range best[:min(3, len(best))] {
		out = append(out, c.name)
	}
	return out
}

// DidYouMean returns, for an error message about the unknown name, the names nearest to it
// formatted as ` (did you mean a or b?)`, or "" when none is near: the engine's one rule for
// suggestions, for packages that report unknown names of their own.
func DidYouMean(name string, names []string) string { return didYouMean(suggest(name, names)) }

// didYouMean formats suggestions for an error message: ` (did you mean a or b?)`, or "".
func didYouMean(names []string) string {
	switch len(names) {
	case 0:
		return ""
	case 1:
		return " (did you mean " + names[0] + "?)"
	}
	return " (did you mean " + strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1] + "?)"
}

// editDistance is the Levenshtein distance between a and b, in runes, with an adjacent
// transposition counting as one edit ("cardid" → "card_id" is 1, "amuont" → "amount" is 1).
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev2 := make([]int, len(rb)+1)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(rb)]
}

package catalog

import "strings"

// CompareVersions orders dotted versions numerically where both parts
// are numbers ("1.10.0" > "1.9.2"), textually otherwise. It returns a negative
// number, zero or a positive number as a is before, equal to or after b.
func CompareVersions(a, b string) int {
	pa, pb := strings.FieldsFunc(a, isSep), strings.FieldsFunc(b, isSep)
	for i := 0; i < len(pa) && i < len(pb); i++ {
		na, aok := number(pa[i])
		nb, bok := number(pb[i])
		switch {
		case aok && bok && na != nb:
			if na < nb {
				return -1
			}
			return 1
		case !(aok && bok) && pa[i] != pb[i]:
			return strings.Compare(pa[i], pb[i])
		}
	}
	return len(pa) - len(pb)
}

func isSep(r rune) bool { return r == '.' || r == '-' || r == '_' || r == '+' }

func number(s string) (int, bool) {
	if s == "" || len(s) > 9 {
		return 0, false
	}
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

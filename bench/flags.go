package bench

import (
	"fmt"
	"strconv"
	"strings"
)

// ParseCounts parses a flag's comma-separated list of counts, each from 1
// to most ("1,4,16"); the error names the first entry that is not one.
func ParseCounts(s string, most int) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > most {
			return nil, fmt.Errorf("%q is not a count from 1 to %d", f, most)
		}
		out = append(out, n)
	}
	return out, nil
}

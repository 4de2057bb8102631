package emcache_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// goBlock matches a fenced Go code block of the README.
var goBlock = regexp.MustCompile("(?ms)^```go\n(.*?)^```")

// TestReadmeExamplesAreTested keeps the README's Go snippets true: each must
// be the body, or a contiguous part, of an example or test that go test
// compiles and runs, here or in the bench module.
func TestReadmeExamplesAreTested(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	blocks := goBlock.FindAllStringSubmatch(string(readme), -1)
	require.NotEmpty(t, blocks)

	var sources []string
	for _, pattern := range []string{"*_test.go", "emcachetest/*_test.go", "bench/*_test.go"} {
		files, err := filepath.Glob(pattern)
		require.NoError(t, err)
		for _, f := range files {
			b, err := os.ReadFile(f)
			require.NoError(t, err)
			sources = append(sources, normalize(string(b)))
		}
	}
	for _, b := range blocks {
		block := normalize(b[1])
		found := false
		for _, src := range sources {
			if strings.Contains(src, block) {
				found = true
				break
			}
		}
		require.True(t, found, "this README snippet is not in any example or test; "+
			"copy it from the example_test.go that runs it:\n%s", b[1])
	}
}

// normalize drops indentation and blank lines, so that a snippet matches
// the function body it was copied from.
func normalize(s string) string {
	var b strings.Builder
	b.WriteByte('\n')
	for line := range strings.Lines(s) {
		if line = strings.TrimSpace(line); line != "" {
			b.WriteString(line)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

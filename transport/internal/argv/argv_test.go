package argv

import (
	"slices"
	"strings"
	"testing"
)

func TestAValueWithSpacesAndQuotesStaysOneArgument(t *testing.T) {
	c, problems := Parse("Swap", []string{"ansible-playbook", "-l", "{{.Node}}", "-e", "v={{.To}}"})
	if problems != nil {
		t.Fatalf("problems: %v", problems)
	}
	got, err := c.Render(map[string]string{"Node": `s1; rm -rf "/"`, "To": "1.13.9"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"ansible-playbook", "-l", `s1; rm -rf "/"`, "-e", "v=1.13.9"}
	if !slices.Equal(got, want) {
		t.Errorf("rendered %q, want %q", got, want)
	}
}

func TestEveryElementThatDoesNotParseIsNamed(t *testing.T) {
	c, problems := Parse("StopCmd", []string{"{{.Node", "ok", "{{end}}"})
	if c != nil {
		t.Errorf("a command with bad elements was returned: %v", c)
	}
	if len(problems) != 2 || !strings.Contains(problems[0], "StopCmd[0]") || !strings.Contains(problems[1], "StopCmd[2]") {
		t.Errorf("problems = %q, want StopCmd[0] and StopCmd[2] named", problems)
	}
}

func TestAMissingKeyAndAnEmptyProgramNameAreErrors(t *testing.T) {
	c, _ := Parse("Swap", []string{"run", "{{.Nope}}"})
	if _, err := c.Render(map[string]string{}); err == nil || !strings.Contains(err.Error(), "Swap[1]") {
		t.Errorf("missing key: err = %v, want an error naming Swap[1]", err)
	}
	c, _ = Parse("Swap", []string{"{{.Prog}}"})
	if _, err := c.Render(map[string]string{"Prog": ""}); err == nil || !strings.Contains(err.Error(), "empty program name") {
		t.Errorf("empty program: err = %v", err)
	}
	if out, err := Command(nil).Render(nil); out != nil || err != nil {
		t.Errorf("empty command rendered %q, %v; want nil, nil", out, err)
	}
}

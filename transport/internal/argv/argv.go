// Package argv holds commands given as argv templates: each element is a
// text/template rendered on its own, so a rendered value is always exactly
// one argument, whatever it holds. transport/exec and transport/ssh share it.
package argv

import (
	"bytes"
	"fmt"
	"text/template"
)

// Command is a parsed argv template.
type Command []*template.Template

// Parse parses each element of args as a template named field[i]. It
// returns the command and one problem (a sentence naming the element and
// the parse error) per element that does not parse; the command is nil then.
// Templates fail on a missing key rather than render "<no value>".
func Parse(field string, args []string) (Command, []string) {
	var problems []string
	out := make(Command, len(args))
	for i, a := range args {
		tp, err := template.New(fmt.Sprintf("%s[%d]", field, i)).Option("missingkey=error").Parse(a)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s[%d] %q is not a valid template: %v", field, i, a, err))
			continue
		}
		out[i] = tp
	}
	if len(problems) > 0 {
		return nil, problems
	}
	return out, nil
}

// Render executes every element with data. An empty command renders to nil;
// a command whose program name renders empty is an error.
func (c Command) Render(data any) ([]string, error) {
	if len(c) == 0 {
		return nil, nil
	}
	out := make([]string, len(c))
	for i, tp := range c {
		var b bytes.Buffer
		if err := tp.Execute(&b, data); err != nil {
			return nil, fmt.Errorf("command template %s: %w", tp.Name(), err)
		}
		out[i] = b.String()
	}
	if out[0] == "" {
		return nil, fmt.Errorf("command template %s renders an empty program name; name the program to run", c[0].Name())
	}
	return out, nil
}

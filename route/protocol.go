package route

import "github.com/agimo/agimo/watch"

// H2C reports whether requests go to r's endpoints over h2c.
func (r *Route) H2C(st *watch.State) bool {
	return false
}

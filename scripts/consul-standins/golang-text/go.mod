module github.com/tonnerre/golang-text

go 1.16

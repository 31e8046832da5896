module kuredcheck

go 1.19

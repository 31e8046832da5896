module cosignformats

go 1.19

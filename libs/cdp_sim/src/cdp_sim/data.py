"""Small embedded reference lists: names, streets, cities, brands, categories.

The retailer is a Spanish fashion-and-lifestyle chain (prices in EUR, phones +34, five-digit
postcodes whose first two digits are the province), so every list here is Spanish-flavoured.
"""

from __future__ import annotations

FIRST_NAMES_F = [
    "María", "Lucía", "Carmen", "Ana", "Laura", "Marta", "Sofía", "Paula", "Elena", "Sara",
    "Isabel", "Cristina", "Julia", "Alba", "Nuria", "Raquel", "Irene", "Patricia", "Beatriz", "Silvia",
    "Rocío", "Andrea", "Claudia", "Noelia", "Pilar", "Teresa", "Rosa", "Inés", "Eva", "Lorena",
    "Mónica", "Sandra", "Natalia", "Alicia", "Marina", "Celia", "Emma", "Valeria", "Aitana", "Olga",
]
FIRST_NAMES_M = [
    "Antonio", "Manuel", "José", "Francisco", "David", "Juan", "Javier", "Daniel", "Carlos", "Jesús",
    "Alejandro", "Miguel", "Rafael", "Pablo", "Pedro", "Ángel", "Sergio", "Fernando", "Jorge", "Luis",
    "Alberto", "Álvaro", "Adrián", "Diego", "Raúl", "Iván", "Rubén", "Enrique", "Óscar", "Andrés",
    "Ramón", "Víctor", "Joaquín", "Santiago", "Hugo", "Mario", "Marcos", "Ignacio", "Roberto", "Gonzalo",
]
# Nicknames cashiers and people type instead of the full name.
NICKNAMES = {
    "Francisco": "Paco", "José": "Pepe", "Manuel": "Manolo", "Antonio": "Toni", "Jesús": "Chus",
    "Ignacio": "Nacho", "Enrique": "Quique", "Alejandro": "Álex", "Guillermo": "Guille",
    "Dolores": "Lola", "Concepción": "Concha", "Rosario": "Charo", "Pilar": "Pili", "Isabel": "Isa",
    "Cristina": "Cris", "Beatriz": "Bea", "Patricia": "Patri", "Roberto": "Rober", "Santiago": "Santi",
}
LAST_NAMES = [
    "García", "Rodríguez", "González", "Fernández", "López", "Martínez", "Sánchez", "Pérez", "Gómez", "Martín",
    "Jiménez", "Ruiz", "Hernández", "Díaz", "Moreno", "Muñoz", "Álvarez", "Romero", "Alonso", "Gutiérrez",
    "Navarro", "Torres", "Domínguez", "Vázquez", "Ramos", "Gil", "Ramírez", "Serrano", "Blanco", "Molina",
    "Morales", "Suárez", "Ortega", "Delgado", "Castro", "Ortiz", "Rubio", "Marín", "Sanz", "Núñez",
    "Iglesias", "Medina", "Garrido", "Cortés", "Castillo", "Santos", "Lozano", "Guerrero", "Cano", "Prieto",
    "Méndez", "Cruz", "Calvo", "Gallego", "Vidal", "León", "Márquez", "Herrera", "Peña", "Flores",
]
STREETS = [
    "Calle Mayor", "Calle Real", "Avenida de la Constitución", "Calle del Sol", "Calle de la Iglesia",
    "Avenida de Andalucía", "Calle Nueva", "Plaza de España", "Calle San Juan", "Calle del Carmen",
    "Avenida de América", "Calle Alcalá", "Gran Vía", "Paseo de la Castellana", "Calle Serrano",
    "Calle de Valencia", "Rambla de Catalunya", "Calle Colón", "Avenida del Puerto", "Calle Larios",
    "Calle Mayor de Gracia", "Calle Goya", "Avenida de la Libertad", "Calle Sierpes", "Calle Princesa",
]
# city, province postcode prefix, latitude, longitude, relative population weight
CITIES = [
    ("Madrid", "28", 40.4168, -3.7038, 33.0),
    ("Barcelona", "08", 41.3874, 2.1686, 16.6),
    ("Valencia", "46", 39.4699, -0.3763, 8.0),
    ("Sevilla", "41", 37.3891, -5.9845, 6.9),
    ("Zaragoza", "50", 41.6488, -0.8891, 6.7),
    ("Málaga", "29", 36.7213, -4.4214, 5.8),
    ("Murcia", "30", 37.9922, -1.1307, 4.6),
    ("Palma", "07", 39.5696, 2.6502, 4.2),
    ("Bilbao", "48", 43.2630, -2.9350, 3.5),
    ("Alicante", "03", 38.3452, -0.4810, 3.4),
    ("Córdoba", "14", 37.8882, -4.7794, 3.2),
    ("Valladolid", "47", 41.6523, -4.7245, 3.0),
    ("Vigo", "36", 42.2406, -8.7207, 2.9),
    ("Gijón", "33", 43.5322, -5.6611, 2.7),
    ("A Coruña", "15", 43.3623, -8.4115, 2.4),
    ("Granada", "18", 37.1773, -3.5986, 2.3),
    ("Vitoria-Gasteiz", "01", 42.8467, -2.6716, 2.5),
    ("Santander", "39", 43.4623, -3.8100, 1.7),
    ("Pamplona", "31", 42.8125, -1.6458, 2.0),
    ("San Sebastián", "20", 43.3183, -1.9812, 1.9),
]
EMAIL_DOMAINS = [("gmail.com", 46), ("hotmail.com", 20), ("yahoo.es", 8), ("outlook.com", 9),
                 ("telefonica.net", 3), ("icloud.com", 6), ("hotmail.es", 5), ("live.com", 3)]
# Domain typos as people really type them.
DOMAIN_TYPOS = {
    "gmail.com": ["gmial.com", "gmail.con", "gamil.com", "gmail.es", "gmai.com"],
    "hotmail.com": ["hotmial.com", "hotmail.con", "hotmal.com", "hotmail.co"],
    "yahoo.es": ["yaho.es", "yahoo.com"],
    "outlook.com": ["outlok.com", "outlook.es"],
    "telefonica.net": ["telefonica.ne"],
    "icloud.com": ["icloud.con", "iclud.com"],
    "hotmail.es": ["hotmial.es", "hotmail.com"],
    "live.com": ["live.con"],
}
# What cashiers and web forms get instead of a real address.
PLACEHOLDER_EMAILS = ["test@test.com", "noemail@noemail.com", "no@email.com", "a@a.com", "sinemail@gmail.com"]
PLACEHOLDER_PHONES = ["+34600000000", "+34999999999"]

CATEGORIES = [
    # name, apparel sizes kind, price median EUR, share of catalogue
    ("Dresses", "apparel", 45.0, 8), ("T-Shirts", "apparel", 18.0, 10), ("Jeans", "waist", 45.0, 8),
    ("Jackets", "apparel", 85.0, 6), ("Shoes", "shoes", 65.0, 8), ("Sneakers", "shoes", 75.0, 7),
    ("Bags", "one", 50.0, 6), ("Accessories", "one", 15.0, 8), ("Sportswear", "apparel", 35.0, 7),
    ("Knitwear", "apparel", 40.0, 6), ("Shirts", "apparel", 35.0, 7), ("Skirts", "apparel", 30.0, 5),
    ("Swimwear", "apparel", 28.0, 4), ("Kids", "kids", 20.0, 6), ("Home", "one", 25.0, 4),
]
SIZES = {
    "apparel": ["XS", "S", "M", "L", "XL", "XXL"],
    "waist": ["36", "38", "40", "42", "44", "46"],
    "shoes": ["37", "38", "39", "40", "41", "42", "43", "44"],
    "kids": ["2Y", "4Y", "6Y", "8Y", "10Y", "12Y"],
    "one": ["One Size"],
}
COLOURS = ["Black", "White", "Navy", "Grey", "Beige", "Red", "Blue", "Green", "Pink", "Brown",
           "Yellow", "Khaki", "Burgundy", "Multicolour"]
BRANDS = [
    "Marea", "Olivo", "Sierra Norte", "Brisa", "Cala", "Duna", "Nómada", "Alba Studio", "Terral",
    "Ribera", "Lúa", "Arce", "Moraga", "Vela", "Cierzo", "Salitre", "Mistral", "Almendro",
    "Candela", "Faro", "Tramontana", "Jara", "Corinto", "Granate", "Levante", "Ébano",
]
ADJECTIVES = ["Classic", "Slim", "Relaxed", "Oversized", "Essential", "Premium", "Organic", "Cropped",
              "Linen", "Cotton", "Wool-blend", "Recycled", "Vintage", "Textured", "Striped", "Printed"]
SEARCH_TERMS = {
    "Dresses": ["vestido", "vestido largo", "vestido fiesta", "dress"],
    "T-Shirts": ["camiseta", "camiseta blanca", "t-shirt", "basic tee"],
    "Jeans": ["vaqueros", "jeans", "pantalón vaquero", "mom jeans"],
    "Jackets": ["chaqueta", "abrigo", "cazadora", "parka"],
    "Shoes": ["zapatos", "botas", "sandalias", "mocasines"],
    "Sneakers": ["zapatillas", "sneakers", "deportivas"],
    "Bags": ["bolso", "mochila", "bandolera"],
    "Accessories": ["cinturón", "gorra", "bufanda", "gafas de sol"],
    "Sportswear": ["mallas", "ropa deporte", "sudadera"],
    "Knitwear": ["jersey", "cárdigan", "punto"],
    "Shirts": ["camisa", "camisa lino", "blusa"],
    "Skirts": ["falda", "falda midi"],
    "Swimwear": ["bikini", "bañador"],
    "Kids": ["ropa niño", "ropa niña", "kids"],
    "Home": ["cojín", "toalla", "vela aromática"],
}
COMPANIES = [
    ("Hoteles Mirador", "Hospitality"), ("Clínica Dental Sonríe", "Healthcare"), ("Uniformes Ibéricos", "Retail"),
    ("Escuela Montessori Arce", "Education"), ("Gimnasio Vital", "Fitness"), ("Restaurantes La Lonja", "Hospitality"),
    ("Consultoría Norte", "Professional Services"), ("Talleres Ruiz", "Automotive"), ("Bodegas Ribera Alta", "Food & Beverage"),
    ("Eventos Candela", "Events"), ("Logística Levante", "Logistics"), ("Estudio Faro", "Design"),
]
NPS_COMMENTS = {
    "promoter": ["Me encanta la calidad", "Envío rapidísimo", "Muy buena atención en tienda", "Todo perfecto", ""],
    "passive": ["Bien, aunque el envío tardó", "Correcto", "Las tallas no son muy fiables", ""],
    "detractor": ["El pedido llegó tarde", "Mala atención al cliente", "La devolución fue un lío", "Calidad peor de lo esperado", ""],
}
USER_AGENTS_DESKTOP = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
]
USER_AGENTS_MOBILE = [
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 13; Pixel 7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
]
USER_AGENTS_TABLET = [
    "Mozilla/5.0 (iPad; CPU OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1",
]
PHONE_MODELS = [
    ("ios", "Apple", "iPhone15,2", "18.1"), ("ios", "Apple", "iPhone14,5", "17.6"), ("ios", "Apple", "iPhone16,1", "18.2"),
    ("android", "samsung", "SM-S918B", "14"), ("android", "samsung", "SM-A546B", "14"), ("android", "Google", "Pixel 7", "13"),
    ("android", "Xiaomi", "2201117TG", "13"),
]
TABLET_MODELS = [("ios", "Apple", "iPad13,18", "17.6"), ("android", "samsung", "SM-X200", "14")]
